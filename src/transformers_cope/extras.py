"""Optional dependencies: fail at the start of a script, in one line, when an extra is not installed.

Why: the training recipes need the `train` extra (PEFT, TRL, `evaluate`, `datasets`), which the README's
two-command install does not bring. Without a check they ran for minutes and died on the first import of one of
them (e.g. `evaluate` after training, in the held-out evaluation). `require_extra` checks with
`importlib.util.find_spec` (nothing is imported) and exits with the install command.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

__all__ = ["EXTRA_MODULES", "missing_modules", "require_extra"]

# What each extra of pyproject.toml provides, by import name.
EXTRA_MODULES = {
    "train": ("peft", "trl", "evaluate", "datasets"),
    "camera": ("skimage", "sklearn"),
    "eval": ("lmms_eval", "loguru", "sacrebleu", "pytablewriter"),
}


def missing_modules(*modules: str) -> list[str]:
    """The names among `modules` that cannot be imported here."""
    return [name for name in modules if importlib.util.find_spec(name) is None]


def require_extra(extra: str, *modules: str, script: str | None = None) -> None:
    """Exit (status 1) with one line naming the missing modules and the install command, unless all import.

    modules: defaults to everything the extra provides (EXTRA_MODULES[extra]).
    """
    if extra not in EXTRA_MODULES:
        raise ValueError(f"unknown extra {extra!r}; known: {sorted(EXTRA_MODULES)}")
    missing = missing_modules(*(modules or EXTRA_MODULES[extra]))
    if missing:
        name = script or Path(sys.argv[0]).name or "this script"
        how = 'pip install --no-deps "lmms-eval==0.7.3" && ' if "lmms_eval" in missing else ""
        raise SystemExit(f"{name} needs {', '.join(missing)} (the '{extra}' extra): {how}pip install -e \".[{extra}]\" "
                         f"in a checkout, or pip install \"transformers-cope[{extra}]\"")
