"""Transformers' own common test mixins, taken at test time from the source distribution of the INSTALLED release.

Why at test time: the mixins (`ModelTesterMixin`, `ConfigTester`, `VideoProcessingTestMixin`) are not in the wheel,
change every release and must match the installed library, so the conformance tests fetch
`transformers-<installed version>.tar.gz` with pip (`pip download --no-deps --no-binary :all:`), keep its top-level
`tests/*.py` under the pytest cache dir, and import them as the package `_hf_upstream_tests`. Nothing of upstream's
test code is in this repository.

The sdist ships only `tests/test*.py` (setuptools' default), not the sub-packages that `test_modeling_common.py` and
`test_configuration_common.py` import at module level: `generation/test_utils.py` (`GenerationTesterMixin`),
`exporters/test_export.py` (`ExportTesterMixin`) and `utils/test_configuration_utils.py`. No release's sdist has them
(checked: 5.17.0 and 5.25.0). When `COPE_TRANSFORMERS_SOURCE` points at a transformers source checkout of the same
version, they are imported from it. Otherwise each is registered as an explicitly named stand-in WITHOUT tests
(`UPSTREAM_MISSING` lists them, and the conformance modules report a skip per missing mixin); CoPE's generation paths
are then covered by tests/test_generation_paths.py.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tarfile
import tempfile
import types
from pathlib import Path

import transformers

PACKAGE = "_hf_upstream_tests"
VERSION = transformers.__version__
# sub-module of tests/ -> (names a module-level import needs, why it is missing)
_SUBMODULES = {
    "generation.test_utils": ("GenerationTesterMixin",),
    "exporters.test_export": ("ExportTesterMixin",),
    "utils.test_configuration_utils": ("config_common_kwargs",),
}
UPSTREAM_MISSING: dict[str, str] = {}  # sub-module -> reason it is a stand-in (filled by `load`)


class UpstreamUnavailable(RuntimeError):
    """The sdist could not be fetched (offline, no such release on the index, pip failure)."""


def cache_dir() -> Path:
    """`COPE_UPSTREAM_TESTS_DIR` (set by tests/conftest.py to a folder of the pytest cache), else .pytest_cache."""
    configured = os.environ.get("COPE_UPSTREAM_TESTS_DIR")
    base = Path(configured) if configured else Path(__file__).resolve().parents[1] / ".pytest_cache" / "d" / "transformers-sdist"
    base.mkdir(parents=True, exist_ok=True)
    return base


def _download_tests(target: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--timeout", "30",
               "--retries", "1", "--disable-pip-version-check", "-q", "-d", tmp, f"transformers=={VERSION}"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise UpstreamUnavailable(f"pip download transformers=={VERSION} failed: {e}") from e
        archives = list(Path(tmp).glob("transformers-*.tar.gz"))
        if proc.returncode != 0 or not archives:
            raise UpstreamUnavailable(
                f"pip could not download the transformers=={VERSION} sdist (offline or not on the index): "
                f"{(proc.stderr or proc.stdout).strip().splitlines()[-1:] or proc.returncode}"
            )
        partial = target.with_name(target.name + ".partial")
        partial.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archives[0]) as tar:
            for member in tar.getmembers():
                parts = Path(member.name).parts
                if len(parts) == 3 and parts[1] == "tests" and parts[2].endswith(".py") and member.isfile():
                    (partial / parts[2]).write_bytes(tar.extractfile(member).read())
        # upstream's tests/ is a package with an empty __init__.py (test_configuration_common.py imports the folder
        # through it); the sdist leaves that empty file out
        (partial / "__init__.py").write_text("")
        if not (partial / "test_modeling_common.py").is_file():
            raise UpstreamUnavailable(f"the transformers=={VERSION} sdist has no tests/test_modeling_common.py")
        partial.rename(target)


def _stand_in(name: str, reason: str) -> types.ModuleType:
    """A named placeholder: mixin classes without tests, an empty kwargs dict; `UPSTREAM_MISSING` says why."""
    module = types.ModuleType(f"{PACKAGE}.{name}")
    module.__doc__ = f"Stand-in: {reason}"
    for attr in _SUBMODULES[name]:
        if attr.endswith("Mixin"):
            setattr(module, attr, type(attr, (), {"__doc__": f"Stand-in without tests: {reason}"}))
        else:
            setattr(module, attr, {})
    return module


def _register(name: str, path: Path | None, reason: str) -> None:
    parent = name.rpartition(".")[0]
    if f"{PACKAGE}.{parent}" not in sys.modules:
        package = types.ModuleType(f"{PACKAGE}.{parent}")
        package.__path__ = [] if path is None else [str(path.parent)]
        sys.modules[f"{PACKAGE}.{parent}"] = package
    if path is not None:
        spec = importlib.util.spec_from_file_location(f"{PACKAGE}.{name}", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    else:
        sys.modules[f"{PACKAGE}.{name}"] = _stand_in(name, reason)
        UPSTREAM_MISSING[name] = reason


def load(*modules: str) -> list[types.ModuleType]:
    """Import upstream's `tests/<module>.py` for the installed transformers (fetching the sdist once)."""
    tests = cache_dir() / f"transformers-{VERSION}-tests"
    if not tests.is_dir():
        _download_tests(tests)
    (tests / "__init__.py").touch()
    if PACKAGE not in sys.modules:
        package = types.ModuleType(PACKAGE)
        package.__path__ = [str(tests)]
        sys.modules[PACKAGE] = package
        source = os.environ.get("COPE_TRANSFORMERS_SOURCE")
        for name in _SUBMODULES:
            relative = Path(*name.split(".")).with_suffix(".py")
            candidates = [tests / relative] + ([Path(source) / "tests" / relative] if source else [])
            found = next((p for p in candidates if p.is_file()), None)
            reason = (f"tests/{relative.as_posix()} is not in the transformers {VERSION} sdist (it ships only "
                      "tests/test*.py) and COPE_TRANSFORMERS_SOURCE names no checkout that has it")
            _register(name, found, reason)
    return [importlib.import_module(f"{PACKAGE}.{module}") for module in modules]


