"""lmms-eval plugin: `cope_videolm` on the local `cope_motion_qa` task, offline, equals the project's own harness.

lmms-eval is optional (its releases pin av<16; install it with `pip install --no-deps "lmms-eval==0.7.3"` plus the
`eval` extra, as .ci/run does): without it these tests are skipped with that reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

pytest.importorskip("lmms_eval", reason='lmms-eval is not installed (pip install --no-deps "lmms-eval==0.7.3")')

from transformers_cope.embedded import DEFAULT_MODEL_DIR  # noqa: E402
from transformers_cope.lmms_plugin import MODEL_ID, TASKS_DIR  # noqa: E402
from transformers_cope.training.evaluation import evaluate_video_qa  # noqa: E402

TASK = "cope_motion_qa"
TASK_JSONL = TASKS_DIR / TASK / f"{TASK}.jsonl"


@pytest.fixture
def video_dir(tmp_path_factory, monkeypatch):
    folder = tmp_path_factory.getbasetemp() / "lmms_videos"  # shared by the tests of one session
    monkeypatch.setenv("COPE_LMMS_VIDEO_DIR", str(folder))
    return folder


def _harness_accuracy(limit: int | None = None) -> tuple[float, list[str]]:
    """evaluate_video_qa on the task's records, videos resolved exactly as the task resolves them."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("cope_task_utils", TASKS_DIR / TASK / "utils.py")
    utils = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(utils)
    records = [json.loads(line) for line in TASK_JSONL.read_text(encoding="utf-8").splitlines() if line.strip()]
    records = records[:limit] if limit else records
    for record in records:
        record["video"] = utils.cope_doc_to_visual(record)[0]
    result = evaluate_video_qa(str(DEFAULT_MODEL_DIR), records, batch_size=16, progress=False)
    return result.accuracy, [row["prediction"] for row in result.predictions]


def test_task_in_process_matches_the_harness(video_dir):
    """lmms-eval's evaluator with our task folder only (no default tasks indexed): same accuracy and answers."""
    from lmms_eval import evaluator
    from lmms_eval.tasks import TaskManager

    from transformers_cope.lmms_plugin.models.cope_videolm import CoPEVideoLMEval

    limit = 16
    manager = TaskManager("WARNING", include_path=str(TASKS_DIR), include_defaults=False)
    assert TASK in manager.all_tasks
    model = CoPEVideoLMEval(pretrained=str(DEFAULT_MODEL_DIR), device="cpu", batch_size=16)
    out = evaluator.simple_evaluate(model=model, tasks=[TASK], task_manager=manager, limit=limit, log_samples=True,
                                    bootstrap_iters=0, verbosity="WARNING")
    lmms_accuracy = out["results"][TASK]["accuracy,none"]
    answers = [s["filtered_resps"][0] if isinstance(s["filtered_resps"], list) else s["filtered_resps"]
               for s in sorted(out["samples"][TASK], key=lambda s: s["doc_id"])]
    harness_accuracy, harness_answers = _harness_accuracy(limit)
    assert lmms_accuracy == pytest.approx(harness_accuracy, abs=1e-12)
    assert [a.strip() for a in answers] == [a.strip() for a in harness_answers]
    assert harness_accuracy >= 0.9  # the embedded model on its own kind of data (not a vacuous equality)


@pytest.mark.slow
def test_lmms_eval_command_line_offline(video_dir, tmp_path):
    """`lmms-eval --model cope_videolm --model_args pretrained=PATH --tasks cope_motion_qa`: the model comes in
    through the plugin (the `lmms_eval.models` entry point when this package is installed with its metadata, else
    LMMS_EVAL_PLUGINS), the task through --include_path; HF offline. Accuracy equals the harness's on all records."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1] / "src"),
                                          os.environ.get("PYTHONPATH", "")])}
    if not any(ep.name == MODEL_ID for ep in entry_points(group="lmms_eval.models")):
        env["LMMS_EVAL_PLUGINS"] = "transformers_cope.lmms_plugin"
    out_dir = tmp_path / "lmms_out"
    cmd = [sys.executable, "-m", "lmms_eval", "--model", MODEL_ID, "--model_args",
           f"pretrained={DEFAULT_MODEL_DIR},device=cpu", "--tasks", TASK, "--include_path", str(TASKS_DIR),
           "--output_path", str(out_dir)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(next(out_dir.rglob("*_results.json")).read_text(encoding="utf-8"))
    harness_accuracy, _ = _harness_accuracy()
    assert results["results"][TASK]["accuracy,none"] == pytest.approx(harness_accuracy, abs=1e-12)
