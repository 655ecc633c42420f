"""Share a CoPE-VideoLM on the Hub: model + processor + `video-question-answering` pipeline + model card, one commit.

Why not `model.push_to_hub` + `processor.push_to_hub`: that is two commits, no pipeline (`Pipeline.save_pretrained`
does not save the processor, and `pipeline.push_to_hub` neither), and a generic card. `save_cope_pretrained` writes
one folder that loads anywhere with `trust_remote_code=True` (config/model/processor code, `auto_map`,
`custom_pipelines`), and `push_cope_to_hub` uploads that folder in a single commit. Point `endpoint=` (or the
`HF_ENDPOINT` variable) at `transformers_cope.testing.hub_server.LocalHubServer` to try it without a network.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from huggingface_hub import CommitOperationAdd, HfApi

from .model_card import build_model_card
from .pipeline_cope import TASK, VideoQuestionAnsweringPipeline, register_pipeline

__all__ = ["push_cope_to_hub", "save_cope_pretrained"]

# auto_map entries `save_pretrained` does not write (it only records the class being saved).
_EXTRA_AUTO_MAP = {
    "AutoModel": "modeling_cope.CoPEVideoLMModel",
    "AutoModelForMultimodalLM": "modeling_cope.CoPEVideoLMForConditionalGeneration",
}


def save_cope_pretrained(model, processor, save_directory: str | os.PathLike, *, model_card: bool = True,
                         repo_id: str | None = None, card_kwargs: dict | None = None) -> Path:
    """Write model, processor, remote code, the custom pipeline and a model card to `save_directory`.

    The folder then works with `pipeline(model=folder, trust_remote_code=True)` and
    `AutoModelForImageTextToText/AutoProcessor.from_pretrained(folder, trust_remote_code=True)` on a machine without
    this package. The model's config is restored afterwards (the pipeline entry is written for the save only).
    """
    register_pipeline()
    save_directory = Path(save_directory)
    save_directory.mkdir(parents=True, exist_ok=True)
    config = model.config
    saved = {name: getattr(config, name, None) for name in ("custom_pipelines", "auto_map")}
    try:
        # The real mechanism: Pipeline.save_pretrained writes config.custom_pipelines (with transformers Auto class
        # names) and copies pipeline_cope.py; the model is saved by it too.
        pipe = VideoQuestionAnsweringPipeline(model=model, processor=processor, task=TASK, device=model.device)
        config.auto_map = {**(saved["auto_map"] or {}), **_EXTRA_AUTO_MAP}
        pipe.save_pretrained(save_directory)
    finally:
        for name, value in saved.items():
            if value is None:
                if name in config.__dict__:
                    delattr(config, name)
            else:
                setattr(config, name, value)
    processor.save_pretrained(save_directory)  # Pipeline.save_pretrained skips processors
    if model_card:
        card = build_model_card(model, processor, repo_id=repo_id, **dict(card_kwargs or {}))
        (save_directory / "README.md").write_text(card, encoding="utf-8")
    return save_directory


def push_cope_to_hub(model, processor, repo_id: str, *, token: str | bool | None = None, private: bool | None = None,
                     commit_message: str = "Upload CoPE-VideoLM (model, processor, pipeline, model card)",
                     commit_description: str | None = None, revision: str | None = None, create_pr: bool = False,
                     endpoint: str | None = None, model_card: bool = True, card_kwargs: dict | None = None):
    """Create `repo_id` if needed and upload model + processor + pipeline + model card in one commit.

    Returns the `huggingface_hub.CommitInfo` (`.oid`, `.commit_url`). `endpoint` defaults to `HF_ENDPOINT` / the Hub.
    Files the repo already holds unchanged are skipped by huggingface_hub (no empty commit).
    """
    api = HfApi(endpoint=endpoint, token=token)
    url = api.create_repo(repo_id, private=private, exist_ok=True)
    repo_id = url.repo_id
    with tempfile.TemporaryDirectory(prefix="cope-push-") as folder:
        save_cope_pretrained(model, processor, folder, model_card=model_card, repo_id=repo_id,
                             card_kwargs=card_kwargs)
        root = Path(folder)
        operations = [
            CommitOperationAdd(path_in_repo=path.relative_to(root).as_posix(), path_or_fileobj=str(path))
            for path in sorted(root.rglob("*"))
            if path.is_file() and "__pycache__" not in path.parts and not path.name.startswith(".")
        ]
        return api.create_commit(
            repo_id=repo_id,
            operations=operations,
            commit_message=commit_message,
            commit_description=commit_description,
            revision=revision,
            create_pr=create_pr,
        )
