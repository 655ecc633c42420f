"""Run Python code in a fresh interpreter where `import transformers_cope` is impossible.

Why: remote-code and Hub round-trip tests must prove that a saved or pushed CoPE-VideoLM loads with nothing but
transformers (+ torch, PyAV) installed. The child drops every sys.path entry that holds the package (the editable
install's src/ folder) and, should the package still be importable (a regular install in site-packages), blocks it
with a meta-path finder; then it asserts that the import fails before running the test code.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

PREAMBLE = textwrap.dedent(
    """
    import importlib.abc, importlib.util, os, sys
    sys.path[:] = [p for p in sys.path
                   if not os.path.isfile(os.path.join(p or ".", "transformers_cope", "__init__.py"))
                   or os.path.isdir(os.path.join(p or ".", "torch"))]
    sys.modules.pop("transformers_cope", None)
    if importlib.util.find_spec("transformers_cope") is not None:
        class _Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "transformers_cope" or name.startswith("transformers_cope."):
                    raise ModuleNotFoundError(f"No module named {name!r} (blocked for this test)")
                return None
        sys.meta_path.insert(0, _Block())
    try:
        import transformers_cope  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("transformers_cope is importable in the isolated interpreter")
    """
)


def run_isolated(code: str, *, cwd: Path, env: dict[str, str] | None = None, timeout: float = 240) -> dict:
    """Run `code` (which must print one JSON line last) without transformers_cope; return that JSON object.

    The child runs in `cwd` with HF_HOME under it (its own Hub cache and remote-code module cache).
    """
    child_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    child_env.update({"HF_HOME": str(Path(cwd) / "hf_home"), "TOKENIZERS_PARALLELISM": "false",
                      "OMP_NUM_THREADS": "1", "HF_HUB_DISABLE_TELEMETRY": "1"})
    child_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-c", PREAMBLE + "\n" + textwrap.dedent(code)],
        cwd=cwd, env=child_env, capture_output=True, text=True, timeout=timeout,
    )
    if proc.returncode != 0:
        raise AssertionError(f"isolated child failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise AssertionError(f"isolated child printed no JSON:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])
