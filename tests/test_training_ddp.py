"""Scale-out with an existing engine: the unchanged training script under `accelerate launch` (2 CPU processes, DDP
over gloo) makes exactly the update one process makes with the same global batch."""

import importlib.util
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "examples" / "train_motion_qa.py"


def load_example():
    spec = importlib.util.spec_from_file_location("train_motion_qa", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(300)
def test_ddp_two_processes_equal_one_process(tmp_path):
    # SGD, not Adam: Adam's update is ~lr * sign(grad) and would hide a wrongly scaled gradient.
    common = ["--train-samples", "4", "--max-steps", "1", "--optim", "sgd", "--lr", "0.5", "--warmup-steps", "0",
              "--no-eval", "--quiet", "--threads", "1", "--workers", "1", "--data-dir", str(tmp_path / "data")]
    example = load_example()
    example.main(common + ["--batch-size", "4", "--output-dir", str(tmp_path / "one")])

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
              str(REPO / "examples" / "accelerate_ddp.yaml"), "--num_processes", "2",
              "--main_process_port", str(free_port())]
    run = subprocess.run(launch + [str(SCRIPT), *common, "--batch-size", "2", "--output-dir", str(tmp_path / "two")],
                         capture_output=True, text=True, env=env, timeout=280, cwd=REPO)
    assert run.returncode == 0, run.stderr[-3000:]
    assert '"world_size": 2' in run.stdout and "MULTI_CPU" in run.stdout

    one = load_file(tmp_path / "one" / "model.safetensors")
    two = load_file(tmp_path / "two" / "model.safetensors")
    from transformers import set_seed

    set_seed(0)
    initial, _ = example.build_model_and_processor(example.parse_args(common))
    initial = {k: v.detach() for k, v in initial.state_dict().items()}
    assert one.keys() == two.keys()
    moved = [k for k in one if not torch.allclose(one[k], initial[k], atol=1e-4)]
    assert len(moved) > len(one) // 2, "the step must really change the weights"
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=0, atol=1e-6, msg=f"{key} differs between 2 and 1 processes")


def test_no_split_modules_cover_decoder_vision_and_delta_layers():
    """What FSDP's TRANSFORMER_BASED_WRAP (examples/accelerate_fsdp.yaml) wraps comes from `_no_split_modules`."""
    from accelerate.utils.dataclasses import get_module_class_from_name

    example = load_example()
    model, _ = example.build_model_and_processor(example.parse_args([]))
    found = {name: get_module_class_from_name(model, name) for name in model._no_split_modules}
    wrapped = {name for name, cls in found.items() if cls is not None}
    assert {"Qwen2DecoderLayer", "SiglipEncoderLayer", "CoPEDeltaLayer"} <= wrapped
