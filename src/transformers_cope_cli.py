"""The `cope-videolm` launcher: parse and precheck the command line before anything heavy is imported.

Why a top-level module: `import transformers_cope` registers the Auto classes, which imports torch, Transformers
and PyAV (seconds, tens of seconds on a loaded machine). Every module of the package imports the package first, so
`--help`, a usage error, an empty question or a missing file would wait for all of that. This launcher loads
`transformers_cope/cli.py` (argparse only at its top; every heavy import sits inside the commands) as a standalone
module without importing its package, parses and prechecks there, and only then hands over to the package's
`transformers_cope.cli.main`.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

__all__ = ["main"]


def _light_cli():
    """transformers_cope/cli.py executed outside its package (find_spec of a top-level package imports nothing)."""
    spec = importlib.util.find_spec("transformers_cope")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("cope-videolm: the transformers_cope package is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "cli.py"
    light = importlib.util.spec_from_file_location("_cope_videolm_cli_light", path)
    module = importlib.util.module_from_spec(light)
    # relative imports inside its functions (e.g. argument checkers) resolve to the real package, imported then
    module.__package__ = "transformers_cope"
    light.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    cli = _light_cli()
    args = cli.build_parser().parse_args(argv)  # --help and usage errors end here (exit 0 / 2)
    try:
        cli.precheck(args)
    except cli.CLIError as err:
        print(f"cope-videolm {args.command}: error: {err}", file=sys.stderr)
        return cli.EXIT_USAGE
    from transformers_cope.cli import main as full_main

    return full_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
