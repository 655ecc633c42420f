"""Loading a checkpoint never runs its code or unpickles it implicitly (issue 16, D4 and D9).

D4: `pipeline("video-question-answering", model=folder)` on a folder written by `save_cope_pretrained` used to demand
trust_remote_code even with transformers_cope installed (the folder's `custom_pipelines` won over the registered
task) and then ran the folder's pipeline_cope.py. Now the installed package's class serves it, and a folder whose
pipeline_cope.py would leave a marker proves that file is never executed. Without the package (isolated child) the
folder still needs trust_remote_code.
D9: the safetensors-only policy covers the Δ-encoder (`AutoModel` on a `cope_delta` folder) as well.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch

import transformers_cope  # noqa: F401  (registers the task and the Auto classes)
from _video_factory import render_video, textured_scene
from isolated_python import run_isolated
from transformers_cope import CoPEDeltaEncoder, CoPEVideoLMForConditionalGeneration
from transformers_cope.hub import save_cope_pretrained
from transformers_cope.pipeline_cope import TASK, VideoQuestionAnsweringPipeline
from transformers_cope.tiny import build_tiny_processor, tiny_model_config


@pytest.fixture(scope="module")
def saved_folder(tmp_path_factory):
    torch.manual_seed(0)
    model = CoPEVideoLMForConditionalGeneration(tiny_model_config()).eval()
    folder = tmp_path_factory.mktemp("cope_saved")
    save_cope_pretrained(model, build_tiny_processor(), folder)
    return folder


def test_installed_package_serves_the_task_without_running_the_folders_code(saved_folder, tmp_path):
    from transformers import pipeline

    folder = tmp_path / "tampered"
    shutil.copytree(saved_folder, folder)
    marker = tmp_path / "pipeline_code_ran"
    assert "video-question-answering" in json.loads((folder / "config.json").read_text())["custom_pipelines"]
    (folder / "pipeline_cope.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\nraise RuntimeError('the checkpoint pipeline code was executed')\n")
    video = render_video(tmp_path / "clip.mp4", textured_scene(height=64, width=96, num_frames=24, pan=(1.0, 0.0), seed=1), fps=8)

    pipe = pipeline(TASK, model=str(folder), device="cpu")  # no trust_remote_code
    assert type(pipe) is VideoQuestionAnsweringPipeline
    result = pipe(str(video), question="Which way does it move?", max_new_tokens=2)
    assert isinstance(result[0]["answer"], str)
    assert not marker.exists()
    # the on-disk folder is untouched: without the package it still carries its pipeline entry
    assert "video-question-answering" in json.loads((folder / "config.json").read_text())["custom_pipelines"]


def test_without_the_package_the_folder_still_needs_trust_remote_code(saved_folder, tmp_path):
    result = run_isolated(f"""
        import json
        from transformers import pipeline
        out = {{}}
        for trust in (None, False):
            try:
                pipeline({TASK!r}, model={str(saved_folder)!r}, trust_remote_code=trust, device="cpu")
                out[str(trust)] = "loaded"
            except ValueError as e:
                out[str(trust)] = str(e)
        print()  # trust_remote_code=None asks on stdin (EOF: no) without a newline
        print(json.dumps(out))
        """, cwd=tmp_path)
    for trust in ("None", "False"):
        assert "trust_remote_code" in result[trust], (trust, result[trust])


def test_delta_encoder_refuses_pickle_checkpoints_unless_asked(tmp_path):
    from transformers import AutoModel

    torch.manual_seed(0)
    encoder = CoPEDeltaEncoder(tiny_model_config().delta_config).eval()
    folder = tmp_path / "delta"
    encoder.save_pretrained(folder)
    assert (folder / "model.safetensors").is_file()
    (folder / "model.safetensors").unlink()
    torch.save(encoder.state_dict(), folder / "pytorch_model.bin")
    for cls in (CoPEDeltaEncoder, AutoModel):
        with pytest.raises(OSError, match="refuses pickle checkpoints.*use_safetensors=False"):
            cls.from_pretrained(folder)
    loaded = AutoModel.from_pretrained(folder, use_safetensors=False)
    assert type(loaded) is CoPEDeltaEncoder
    for (name, a), (_, b) in zip(loaded.state_dict().items(), encoder.state_dict().items()):
        assert torch.equal(a, b), name
