"""SFT collator, freezing presets, frozen BatchNorm, and real Trainer / TRL SFTTrainer steps on a tiny model."""

import pytest
import torch

from transformers_cope import CoPEVideoLMForConditionalGeneration
from transformers_cope.data import generate_motion_qa, to_messages
from transformers_cope.tiny import build_tiny_processor, tiny_model_config
from transformers_cope.training import (
    IGNORE_INDEX,
    ChatVideoDataset,
    CoPEDataCollator,
    apply_freezing,
    build_trainer,
    freeze_batchnorm,
    init_projection_layers,
    keyframes_only,
    sft_arguments,
)


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    out = tmp_path_factory.mktemp("sft_data")
    return generate_motion_qa(6, out, tasks=("direction", "camera_pan"), duration_s=4.0, progress=False)


@pytest.fixture(scope="module")
def processor():
    return build_tiny_processor(mv_block=8, mv_normalizer=0.5)


@pytest.fixture(scope="module")
def collator(processor):
    return CoPEDataCollator(processor)


def tiny_model(seed=0):
    torch.manual_seed(seed)
    model = CoPEVideoLMForConditionalGeneration(tiny_model_config(mv_normalizer=0.5))
    init_projection_layers(model)
    return model


def test_labels_are_the_assistant_reply_only(records, processor, collator):
    encoded = collator.encode(to_messages(records[0]))
    labels = encoded["labels"]
    targets = labels[labels != IGNORE_INDEX]
    assert processor.tokenizer.decode(targets) == f"{records[0]['answer']}<|im_end|>\n"
    # everything before the reply (video placeholders included) is masked
    first = int((labels != IGNORE_INDEX).nonzero()[0, 0])
    assert (labels[:first] == IGNORE_INDEX).all()
    assert int((encoded["input_ids"] == processor.delta_token_id).sum()) == 3 * 8  # 4 s at 1 fps: I P P P
    assert encoded["video_frame_types"] == ["IPPP"]


def test_batch_padding_and_video_tensors_in_order(records, processor, collator):
    features = [{"messages": to_messages(r)} for r in records[:3]]
    batch = collator(features)
    singles = [collator.encode(to_messages(r)) for r in records[:3]]
    lengths = [len(s["input_ids"]) for s in singles]
    assert batch["input_ids"].shape == (3, max(lengths))
    for row, (single, n) in enumerate(zip(singles, lengths)):  # right padding by default
        assert torch.equal(batch["input_ids"][row, :n], single["input_ids"])
        assert (batch["input_ids"][row, n:] == processor.tokenizer.pad_token_id).all()
        assert batch["attention_mask"][row].sum() == n
        assert (batch["labels"][row, n:] == IGNORE_INDEX).all()
    assert torch.equal(batch["delta_motion_vectors"], torch.cat([s["delta_motion_vectors"] for s in singles]))
    assert torch.equal(batch["pixel_values_videos"], torch.cat([s["pixel_values_videos"] for s in singles]))
    assert batch["video_frame_types"] == ["IPPP"] * 3
    left = CoPEDataCollator(processor, padding_side="left", cache=collator.cache)(features)
    n = lengths[0]
    assert torch.equal(left["input_ids"][0, -n:], singles[0]["input_ids"])
    # pre-encoded features and TRL's prompt/completion form give the same batch
    assert torch.equal(collator(singles)["input_ids"], batch["input_ids"])
    msgs = to_messages(records[0])
    pc = collator([{"prompt": msgs[:1], "completion": msgs[1:]}])
    assert torch.equal(pc["labels"][0, : lengths[0]], singles[0]["labels"])


def test_primitives_are_decoded_once(records, processor):
    collator = CoPEDataCollator(processor)
    collator([{"messages": to_messages(records[0])}])
    assert len(collator.cache) == 1
    cached = collator.cache.get(records[0]["video"])
    collator([{"messages": to_messages(records[0])}])
    assert collator.cache.get(records[0]["video"]) is cached


def test_keyframes_only_strips_delta_steps(records, processor, collator):
    prims = collator.cache.get(records[0]["video"])
    stripped = keyframes_only(prims)
    assert stripped.frame_types == "I" and len(stripped.keyframes) == 1 and len(stripped.motion_vectors) == 0
    assert (stripped.keyframes == prims.keyframes).all()
    kf = CoPEDataCollator(processor, keyframes_only=True, cache=collator.cache)
    batch = kf([{"messages": to_messages(r)} for r in records[:2]])
    assert "delta_motion_vectors" not in batch and batch["video_frame_types"] == ["I", "I"]
    assert not (batch["input_ids"] == processor.delta_token_id).any()
    model = tiny_model()
    assert torch.isfinite(model(**batch).loss)


def test_max_length_refuses_to_cut_video(records, processor, collator):
    short = CoPEDataCollator(processor, max_length=20, cache=collator.cache)
    with pytest.raises(ValueError, match="max_length"):
        short.encode(to_messages(records[0]))


def test_freezing_presets():
    model = tiny_model()
    core = model.model
    counts = apply_freezing(model, "paper")
    assert not any(p.requires_grad for p in core.vision_tower.parameters())
    assert all(p.requires_grad for p in core.language_model.parameters())
    assert all(p.requires_grad for p in core.delta_encoder.parameters())
    assert counts["trainable"] == counts["total"] - sum(p.numel() for p in core.vision_tower.parameters())
    apply_freezing(model, "delta")
    trainable = {n.split(".")[1] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"delta_encoder", "multi_modal_projector"}
    assert apply_freezing(model, "full")["trainable"] == counts["total"]
    with pytest.raises(ValueError, match="preset"):
        apply_freezing(model, "everything")


def test_frozen_batchnorm_keeps_running_stats(records, collator):
    model = tiny_model()
    assert freeze_batchnorm(model) > 0
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    before = bn.running_mean.clone()
    model.train()
    model(**collator([{"messages": to_messages(r)} for r in records[:2]])).loss.backward()
    assert torch.equal(bn.running_mean, before)
    assert bn.weight.grad is not None  # affine parameters still train


def _changed(before, model):
    after = dict(model.named_parameters())
    return {n for n, p in before.items() if not torch.equal(p, after[n].detach())}


@pytest.mark.parametrize("use_trl", [False, True], ids=["Trainer", "SFTTrainer"])
def test_trainer_steps_with_checkpointing(tmp_path, records, processor, collator, use_trl):
    model = tiny_model()
    apply_freezing(model, "paper")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    args = sft_arguments(
        str(tmp_path), use_trl=use_trl, gradient_checkpointing=True, max_steps=2, per_device_train_batch_size=3,
        learning_rate=1e-2, save_strategy="no", use_cpu=True, disable_tqdm=True, logging_steps=1,
    )
    if use_trl:
        from datasets import Dataset

        # raw chat rows through Arrow (None-filled content blocks) -> the collator encodes them
        train = Dataset.from_list([{"messages": to_messages(r)} for r in records])
    else:
        train = ChatVideoDataset([to_messages(r) for r in records], collator, progress=False)
    trainer = build_trainer(model, processor, train, args=args, data_collator=collator)
    assert type(trainer).__name__ == ("SFTTrainer" if use_trl else "Trainer")
    result = trainer.train()
    assert torch.isfinite(torch.tensor(result.training_loss))
    checkpointing = getattr(type(model), "is_activation_checkpointing", None)  # 5.23 name; 5.17 has the old one
    assert checkpointing.fget(model) if checkpointing is not None else model.is_gradient_checkpointing
    changed = _changed(before, model)
    assert not any(".vision_tower." in n for n in changed)  # frozen as in the paper
    assert any(".delta_encoder." in n for n in changed) and any(".language_model." in n for n in changed)
    assert any(".multi_modal_projector." in n for n in changed)
