"""LoRA recipe: adapters only on the LLM, Δ-encoder + projector saved whole; save -> load and merge keep the logits."""

import pytest
import torch
from safetensors import safe_open

from transformers_cope import CoPEVideoLMForConditionalGeneration
from transformers_cope.data import generate_motion_qa, to_messages
from transformers_cope.tiny import build_tiny_processor, tiny_model_config
from transformers_cope.training import (
    ChatVideoDataset,
    CoPEDataCollator,
    build_trainer,
    init_projection_layers,
    sft_arguments,
)
from transformers_cope.training.lora import (
    apply_lora,
    language_model_linear_regex,
    load_lora,
    lora_config,
    merge_lora,
)


def base_model():
    torch.manual_seed(0)
    model = CoPEVideoLMForConditionalGeneration(tiny_model_config())
    init_projection_layers(model)
    return model


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A LoRA model after real Trainer steps (so adapters, Δ-encoder, projector and BatchNorm stats all moved)."""
    root = tmp_path_factory.mktemp("lora")
    records = generate_motion_qa(4, root / "data", duration_s=4.0, tasks=("direction",), progress=False)
    processor = build_tiny_processor()
    collator = CoPEDataCollator(processor)
    dataset = ChatVideoDataset([to_messages(r) for r in records], collator, progress=False)
    model = apply_lora(base_model(), r=4)
    args = sft_arguments(str(root / "run"), max_steps=3, per_device_train_batch_size=4, learning_rate=5e-3,
                         save_strategy="no", use_cpu=True, disable_tqdm=True, gradient_checkpointing=True)
    build_trainer(model, processor, dataset, args=args, data_collator=collator).train()
    model.eval()
    batch = collator([{"messages": to_messages(r)} for r in records])
    with torch.no_grad():
        logits = model(**batch).logits
    adapter_dir = root / "adapter"
    model.save_pretrained(adapter_dir)
    return model, batch, logits, adapter_dir


def test_targets_are_the_language_model_linears_only():
    model = base_model()
    regex = language_model_linear_regex(model)
    assert "q_proj" in regex and "down_proj" in regex
    peft_model = apply_lora(model, lora_config(model, r=4))
    lora_modules = {n for n, _ in peft_model.named_modules() if n.endswith("lora_A")}
    assert lora_modules and all(".language_model." in n for n in lora_modules)
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert not any("vision_tower" in n or "lm_head" in n or "embed_tokens" in n for n in trainable)
    assert any("delta_encoder.modules_to_save" in n for n in trainable)
    assert any("multi_modal_projector.modules_to_save" in n for n in trainable)


def test_adapter_holds_lora_and_whole_delta_encoder(trained):
    _, _, _, adapter_dir = trained
    with safe_open(adapter_dir / "adapter_model.safetensors", "pt") as f:
        keys = list(f.keys())
    assert any("lora_A" in k for k in keys)
    assert any("delta_encoder.residual_embeddings" in k and "running_mean" in k for k in keys)  # BN buffers too
    assert any("multi_modal_projector.linear_2" in k for k in keys)
    assert not any("vision_tower" in k for k in keys)


def test_save_load_and_merge_keep_logits(trained):
    model, batch, logits, adapter_dir = trained
    loaded = load_lora(base_model(), adapter_dir)
    loaded.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch).logits, logits, rtol=0, atol=1e-5)
        merged = merge_lora(loaded)
        assert type(merged) is CoPEVideoLMForConditionalGeneration
        assert not any("lora" in n for n, _ in merged.named_parameters())
        torch.testing.assert_close(merged(**batch).logits, logits, rtol=0, atol=1e-5)
    # a fresh base without the adapter answers differently: the adapter carries the training
    with torch.no_grad():
        assert (base_model().eval()(**batch).logits - logits).abs().max() > 1e-3
