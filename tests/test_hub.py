"""Hub sharing without a network: the loopback Hub server, `push_cope_to_hub`, the model card, and a reload of the
pushed repo in a fresh interpreter where transformers_cope cannot be imported."""

from __future__ import annotations

import json
import time
from pathlib import Path

import urllib.error
import urllib.request
import pytest
import torch
import yaml
from huggingface_hub import CommitOperationAdd, HfApi, hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, RepositoryNotFoundError

import transformers_cope  # noqa: F401
from isolated_python import run_isolated
from transformers_cope import CoPEVideoLMForConditionalGeneration
from transformers_cope.hub import push_cope_to_hub, save_cope_pretrained
from transformers_cope.testing.hub_server import LocalHubServer, git_blob_sha1
from transformers_cope.model_card import OVERVIEW, TIPS, build_model_card, token_table
from transformers_cope.pipeline_cope import TASK, register_pipeline
from transformers_cope.tiny import build_tiny_processor, tiny_model_config

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny():
    register_pipeline()
    torch.manual_seed(0)
    return CoPEVideoLMForConditionalGeneration(tiny_model_config()).eval(), build_tiny_processor()


def _request(url: str, *, data: bytes | None = None, method: str | None = None):
    """One HTTP request; error statuses come back as the response instead of raising."""
    try:
        return urllib.request.urlopen(urllib.request.Request(url, data=data, method=method), timeout=10)
    except urllib.error.HTTPError as err:
        return err


# ------------------------------------------------------------------------------------------------ the server itself
def test_server_create_commit_download(tmp_path):
    with LocalHubServer(idle_timeout=60, lifetime=120) as hub:
        assert hub.endpoint.startswith("http://127.0.0.1:")
        api = HfApi(endpoint=hub.endpoint, token="hf_local")
        url = api.create_repo("demo")
        assert url.repo_id == "user/demo"
        assert api.create_repo("user/demo", exist_ok=True).repo_id == "user/demo"
        with pytest.raises(HfHubHTTPError):
            api.create_repo("user/demo")  # 409 without exist_ok

        info = api.create_commit("user/demo", operations=[
            CommitOperationAdd("a.txt", b"hello"), CommitOperationAdd("sub/b.bin", bytes(range(256)))],
            commit_message="two files")
        assert hub.files("user/demo")["sub/b.bin"] == bytes(range(256))
        assert hub.commits("user/demo") == ["initial commit", "two files"]
        # unchanged content is detected through the preupload oids: no empty commit
        again = api.create_commit("user/demo", operations=[CommitOperationAdd("a.txt", b"hello")],
                                  commit_message="same")
        assert again.oid == info.oid and len(hub.commits("user/demo")) == 2

        path = hf_hub_download("user/demo", "sub/b.bin", endpoint=hub.endpoint, cache_dir=tmp_path)
        assert Path(path).read_bytes() == bytes(range(256))
        assert Path(path).parent.parent.name == info.oid  # snapshots/<commit>/sub/b.bin
        assert {f.path for f in api.list_repo_tree("user/demo", recursive=True)} >= {"a.txt", "sub", "sub/b.bin"}
        assert api.model_info("user/demo").sha == info.oid
        with pytest.raises(EntryNotFoundError):
            hf_hub_download("user/demo", "missing.txt", endpoint=hub.endpoint, cache_dir=tmp_path)
        with pytest.raises(RepositoryNotFoundError):
            api.model_info("user/nope")

        head = _request(f"{hub.endpoint}/user/demo/resolve/main/a.txt", method="HEAD")
        assert head.headers["X-Repo-Commit"] == info.oid and head.headers["ETag"] == f'"{git_blob_sha1(b"hello")}"'
        lfs = b'{"key":"header","value":{"summary":"x"}}\n{"key":"lfsFile","value":{"path":"w","oid":"0","size":1}}\n'
        assert _request(f"{hub.endpoint}/api/models/user/demo/commit/main", data=lfs).status == 400
        assert ("POST", "/api/models/user/demo/preupload/main") in hub.requests


def test_server_is_bounded_and_stops_by_itself():
    with LocalHubServer(idle_timeout=60, lifetime=120, max_body_bytes=1024) as hub:
        assert _request(f"{hub.endpoint}/api/repos/create", data=b"x" * 4096).status == 413
        assert _request(f"{hub.endpoint}/api/whoami-v2").status == 200  # still serving after a rejected body

    hub = LocalHubServer(idle_timeout=0.5, lifetime=10).start()
    try:
        deadline = time.monotonic() + 10
        while hub.running and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not hub.running  # stopped by itself after 0.5 s without requests
        with pytest.raises(OSError):  # connection refused: the socket is closed
            urllib.request.urlopen(f"{hub.endpoint}/api/whoami-v2", timeout=2)
    finally:
        hub.stop()


# ------------------------------------------------------------------------------------------------ model card
def test_model_card_states_gop_settings_and_savings(tiny):
    model, processor = tiny
    card = build_model_card(model, processor, repo_id="user/cope-tiny")
    metadata = yaml.safe_load(card.split("---")[1])
    assert metadata["library_name"] == "transformers" and "custom_code" in metadata["tags"]
    assert "| GOP (`gop_size` steps) | 8 |" in card and "| keyframes per GOP (`keyframes_per_gop`) | 1 |" in card
    # tiny: 4x4 keyframe tokens + 4 row newlines = 20 per keyframe, 9 per Δ step; 64 steps: 8*20 + 56*9 = 664 vs 1280
    assert "costs **664** LLM tokens instead of 1,280" in card and "48% fewer" in card
    assert "1 keyframe per GOP (this checkpoint)" in card
    assert 'pipeline(model="user/cope-tiny", trust_remote_code=True)' in card
    table = token_table(model.config)
    assert table.splitlines()[-1].startswith("| dense") and "100.0%" in table.splitlines()[-1]


def test_model_card_prose_matches_the_model_doc():
    doc = (REPO_ROOT / "modeling_docs" / "cope_videolm.md").read_text(encoding="utf-8")
    assert OVERVIEW in doc
    for tip in TIPS:
        assert tip in doc


# ------------------------------------------------------------------------------------------------ push + reload
def test_save_cope_pretrained_writes_a_self_contained_folder(tiny, tmp_path):
    model, processor = tiny
    save_cope_pretrained(model, processor, tmp_path)
    names = {p.name for p in tmp_path.iterdir()}
    assert {"config.json", "model.safetensors", "processor_config.json", "tokenizer.json", "README.md",
            "configuration_cope.py", "modeling_cope.py", "processing_cope.py", "video_processing_cope.py",
            "codec.py", "errors.py", "pipeline_cope.py", "test_time_scaling.py"} <= names
    # the codec layer's flat siblings travel with it (transformers follows relative imports recursively)
    assert {f"codec_{part}.py" for part in ("types", "probe", "decode", "schedule", "fusion", "transcode", "extract",
                                           "parallel", "live")} <= names
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["custom_pipelines"][TASK] == {"impl": "pipeline_cope.VideoQuestionAnsweringPipeline",
                                                "pt": ["AutoModelForImageTextToText"], "type": "multimodal"}
    assert config["auto_map"]["AutoModel"] == "modeling_cope.CoPEVideoLMModel"
    assert not hasattr(model.config, "custom_pipelines")  # the caller's config is left as it was


def test_push_to_local_hub_and_reload_without_the_package(tiny, tmp_path, media_dir):
    model, processor = tiny
    video = str(media_dir / "vid_h264.mp4")
    question = "Which direction does the traffic move?"
    from transformers import pipeline

    expected = pipeline(TASK, model=model, processor=processor, device="cpu")(video, question=question,
                                                                               max_new_tokens=6)
    with LocalHubServer(idle_timeout=300, lifetime=600) as hub:
        info = push_cope_to_hub(model, processor, "user/cope-tiny", endpoint=hub.endpoint, token="hf_local")
        files = hub.files("user/cope-tiny")
        assert hub.commits("user/cope-tiny") == ["initial commit",
                                                 "Upload CoPE-VideoLM (model, processor, pipeline, model card)"]
        assert {"README.md", "model.safetensors", "pipeline_cope.py", "processor_config.json"} <= set(files)
        assert "## Token savings" in files["README.md"].decode()
        posts = [path for method, path in hub.requests if method == "POST"]
        assert posts.count("/api/models/user/cope-tiny/commit/main") == 1  # everything in one commit

        # pushing the same thing again changes nothing
        again = push_cope_to_hub(model, processor, "user/cope-tiny", endpoint=hub.endpoint, token="hf_local")
        assert again.oid == info.oid

        result = run_isolated(
            f"""
            import json
            from transformers import pipeline
            pipe = pipeline(model="user/cope-tiny", trust_remote_code=True, device="cpu")
            answer = pipe({video!r}, question={question!r}, max_new_tokens=6)
            print(json.dumps({{"task": pipe.task, "module": type(pipe).__module__,
                               "model_module": type(pipe.model).__module__, "answer": answer}}))
            """,
            cwd=tmp_path, env={"HF_ENDPOINT": hub.endpoint},
        )
        downloads = {path.rsplit("/", 1)[-1] for method, path in hub.requests if method == "GET" and "/resolve/" in path}
    assert result["task"] == TASK
    assert result["module"].startswith("transformers_modules.") and result["module"].endswith(".pipeline_cope")
    assert result["model_module"].endswith(".modeling_cope")
    assert result["answer"] == expected
    assert {"model.safetensors", "pipeline_cope.py", "codec.py", "tokenizer.json"} <= downloads
