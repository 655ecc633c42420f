"""lmms-eval plugin: evaluate a CoPE-VideoLM with `lmms-eval --model cope_videolm --model_args pretrained=PATH`.

Why a plugin and not a fork: lmms-eval loads external models through the entry-point group `lmms_eval.models`
(this package declares `cope_videolm = "transformers_cope.lmms_plugin:manifests"` in pyproject.toml) and, the older
way, through `LMMS_EVAL_PLUGINS=transformers_cope.lmms_plugin`, which also adds this folder's `tasks/` to the task
search path. Tasks can always be added with `--include_path` (TASKS_DIR below). Installing lmms-eval: its releases
pin `av<16` while this project needs PyAV >= 18.1 (codec motion-vector export), so it is installed with
`pip install --no-deps lmms-eval==0.7.3` plus the `eval` extra (the modules it imports on this path); see the README.

    lmms-eval --model cope_videolm --model_args pretrained=PATH --tasks cope_motion_qa \\
        --include_path "$(python -c 'import transformers_cope.lmms_plugin as p; print(p.TASKS_DIR)')"

`cope_motion_qa` is a local task over the synthetic motion QA (a JSONL of records next to its YAML; each video is
rendered from its record's scene on first use into COPE_LMMS_VIDEO_DIR, default ~/.cache/transformers_cope/lmms_eval),
so nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

TASKS_DIR = Path(__file__).resolve().with_name("tasks")
MODEL_ID = "cope_videolm"
MODEL_CLASS_PATH = "transformers_cope.lmms_plugin.models.cope_videolm.CoPEVideoLMEval"

__all__ = ["MODEL_CLASS_PATH", "MODEL_ID", "TASKS_DIR", "manifests"]


def _filelock_compat() -> None:
    """lmms-eval 0.7.3's evaluator imports `filelock._api` (filelock 3.x) to patch `FileLockMeta.__call__`;
    filelock 4 keeps the same classes under another private module. Expose them under the old name, unchanged, so
    the evaluator's patch applies (nothing happens when `filelock._api` exists)."""
    import importlib
    import sys
    import types

    try:
        importlib.import_module("filelock._api")
        return
    except ImportError:
        pass
    import filelock

    api = types.ModuleType("filelock._api")
    api.BaseFileLock = filelock.BaseFileLock
    api.FileLockMeta = type(filelock.BaseFileLock)
    sys.modules["filelock._api"] = api


_filelock_compat()


def manifests():
    """Entry-point payload of the `lmms_eval.models` group: the manifest that maps `cope_videolm` to the adapter."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return [ModelManifest(model_id=MODEL_ID, simple_class_path=MODEL_CLASS_PATH)]
