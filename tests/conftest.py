"""Shared pytest fixtures: the real videos in ../shared/media and torch thread settings for 2-core CI."""

import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
MEDIA_DIR = REPO_ROOT.parent / "shared" / "media"

torch.set_num_threads(1)  # PyAV's decoder threads and torch's intra-op threads oversubscribe 2 cores otherwise.


@pytest.fixture(scope="session")
def media_dir() -> Path:
    if not MEDIA_DIR.is_dir():
        pytest.skip(f"shared media folder not found at {MEDIA_DIR}")
    return MEDIA_DIR


def pytest_configure(config):
    """The conformance tests keep Transformers' sdist tests in the pytest cache (tests/_upstream_tests.py)."""
    for mark in ("accelerate_tests", "flash_attn_test", "flash_attn_3_test", "flash_attn_4_test", "torch_compile_test"):
        config.addinivalue_line("markers", f"{mark}: a mark of Transformers' common test mixins (conformance tests)")
    cache = getattr(config, "cache", None)
    if cache is not None and "COPE_UPSTREAM_TESTS_DIR" not in os.environ:
        os.environ["COPE_UPSTREAM_TESTS_DIR"] = str(cache.mkdir("transformers-sdist"))
