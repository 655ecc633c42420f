"""Assembly from pretrained parts: tiny SigLIP / Qwen2 / LLaVA-OneVision / ResNet checkpoints are built from configs,
saved, and assembled through from_pretrained (the real loading path); their weights must survive unchanged and the
Δ-encoder must be new."""

import pytest
import torch
from safetensors.torch import load_file
from tokenizers import pre_tokenizers
from transformers import (
    LlavaOnevisionConfig,
    LlavaOnevisionForConditionalGeneration,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen2Tokenizer,
    ResNetConfig,
    ResNetModel,
    SiglipVisionConfig,
    SiglipVisionModel,
)

from transformers_cope.assembly import (
    assemble_from_llava_onevision,
    assemble_from_parts,
    init_residual_backbone,
    resolve_token_ids,
)
from transformers_cope.configuration_cope import CoPEDeltaConfig
from transformers_cope.modeling_cope import CoPEDeltaEncoder, CoPEVideoLMForConditionalGeneration

VISION = dict(image_size=32, patch_size=4, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
              num_attention_heads=2)
TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            max_position_embeddings=512)
DELTA = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
             residual_embedding_size=8, residual_hidden_sizes=[8, 16], residual_depths=[1, 1])
IDS = {"video_token_id": 290, "delta_token_id": 291, "<|frame_newline|>": 292, "<|delta_end|>": 293}


def byte_tokenizer() -> Qwen2Tokenizer:
    """A 257-token byte-level Qwen2 tokenizer without any CoPE token (so they get added)."""
    vocab = {c: i for i, c in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    vocab["<|endoftext|>"] = len(vocab)
    return Qwen2Tokenizer(vocab=vocab, merges=[], padding_side="left")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("parts")
    torch.manual_seed(0)
    SiglipVisionModel(SiglipVisionConfig(**VISION)).save_pretrained(root / "siglip")  # with its pooling head
    Qwen2ForCausalLM(Qwen2Config(vocab_size=300, tie_word_embeddings=True, **TEXT)).save_pretrained(root / "qwen2")
    llava_config = LlavaOnevisionConfig(
        vision_config={"model_type": "siglip_vision_model", **VISION, "vision_use_head": False},
        text_config={"model_type": "qwen2", "vocab_size": 300, **TEXT},
        image_token_index=280, video_token_index=281, vision_feature_layer=-2, vision_feature_select_strategy="full",
    )
    LlavaOnevisionForConditionalGeneration(llava_config).save_pretrained(root / "llava")
    ResNetModel(ResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 32], depths=[1, 1, 1], layer_type="basic")) \
        .save_pretrained(root / "resnet")
    return root


def sample_inputs(model, seed=0):
    """Prompt with one keyframe and two Δ steps in the processor's layout."""
    cfg = model.config
    rows, cols = cfg.keyframe_grid
    g = torch.Generator().manual_seed(seed)
    ids = [5, 6] + ([cfg.video_token_id] * cols + [cfg.frame_newline_token_id]) * rows
    ids += ([cfg.delta_token_id] * 8 + [cfg.delta_end_token_id]) * 2 + [7, 8]
    return {
        "input_ids": torch.tensor([ids]),
        "pixel_values_videos": torch.randn(1, 3, 32, 32, generator=g),
        "delta_motion_vectors": torch.randn(2, 3, 4, 4, generator=g),
        "delta_residuals": torch.randn(2, 3, 16, 16, generator=g),
    }


def assert_kept(module: torch.nn.Module, saved: dict[str, torch.Tensor], prefix: str = "", skip=()) -> int:
    """Every tensor of `module` equals the checkpoint's tensor of the same name (under `prefix`)."""
    state = module.state_dict()
    n = 0
    for name, tensor in state.items():
        if any(s in name for s in skip):
            continue
        key = prefix + name
        assert key in saved, key
        assert torch.equal(tensor, saved[key]), key
        n += 1
    return n


def assert_no_meta(model):
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        assert t.device.type != "meta", name


def test_resolve_token_ids():
    fields, added = resolve_token_ids(token_ids=IDS)
    assert fields == {"video_token_id": 290, "delta_token_id": 291, "frame_newline_token_id": 292,
                      "delta_end_token_id": 293, "vision_start_token_id": None, "vision_end_token_id": None}
    assert added == []
    with pytest.raises(ValueError, match="delta_token_id"):
        resolve_token_ids(token_ids={"video_token_id": 1})
    with pytest.raises(ValueError, match="unknown token"):
        resolve_token_ids(token_ids={**IDS, "foo": 3})
    tokenizer = byte_tokenizer()
    fields, added = resolve_token_ids(tokenizer)
    assert fields["video_token_id"] == tokenizer.convert_tokens_to_ids("<|video_pad|>")
    assert added == list(range(257, len(tokenizer)))


def test_assemble_from_siglip_and_qwen2(checkpoints, tmp_path):
    torch.manual_seed(1)
    model = assemble_from_parts(checkpoints / "siglip", checkpoints / "qwen2", token_ids=IDS, delta_config=DELTA,
                                keyframes_per_gop=2)
    assert isinstance(model, CoPEVideoLMForConditionalGeneration) and not model.training
    assert_no_meta(model)
    assert model.config.keyframes_per_gop == 2 and model.config.tie_word_embeddings
    assert model.model.vision_tower.config.vision_use_head is False  # unused pooling head dropped
    n = assert_kept(model.model.vision_tower, load_file(checkpoints / "siglip" / "model.safetensors"))
    assert n > 10
    qwen = load_file(checkpoints / "qwen2" / "model.safetensors")
    assert_kept(model.model.language_model, qwen, prefix="model.")
    assert model.lm_head.weight is model.model.language_model.embed_tokens.weight  # tied as in the checkpoint
    # The Δ-encoder is new: initialised (finite, queries ~ N(0, 0.02)) and different under another seed
    delta = model.model.delta_encoder
    assert all(torch.isfinite(p).all() for p in delta.parameters())
    assert 0.005 < delta.motion_transformer.queries.std() < 0.05
    torch.manual_seed(2)
    other = assemble_from_parts(checkpoints / "siglip", checkpoints / "qwen2", token_ids=IDS, delta_config=DELTA)
    assert not torch.equal(other.model.delta_encoder.output_proj.weight, delta.output_proj.weight)
    assert not torch.equal(other.model.multi_modal_projector.linear_1.weight,
                           model.model.multi_modal_projector.linear_1.weight)
    # Round trip: the assembled model is an ordinary checkpoint
    inputs = sample_inputs(model)
    model.save_pretrained(tmp_path)
    loaded = CoPEVideoLMForConditionalGeneration.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).logits, model(**inputs).logits, atol=0, rtol=0)
        out = model.generate(**inputs, attention_mask=torch.ones_like(inputs["input_ids"]), max_new_tokens=3,
                             do_sample=False, pad_token_id=0)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 3


def test_assemble_adds_tokens_and_grows_embeddings(checkpoints):
    tokenizer = byte_tokenizer()  # 257 tokens; the LM has 300 rows: the 8 new ids fit, rows start at the mean
    model = assemble_from_parts(checkpoints / "siglip", checkpoints / "qwen2", tokenizer=tokenizer, delta_config=DELTA)
    assert model.config.video_token_id == tokenizer.convert_tokens_to_ids("<|video_pad|>") == 261
    assert model.config.delta_end_token_id == tokenizer.convert_tokens_to_ids("<|delta_end|>")
    emb = model.get_input_embeddings().weight
    qwen = load_file(checkpoints / "qwen2" / "model.safetensors")["model.embed_tokens.weight"]
    new = list(range(257, len(tokenizer)))
    torch.testing.assert_close(emb[new], qwen[:257].mean(0).expand(len(new), -1))
    assert torch.equal(emb[:257], qwen[:257])
    # ids beyond the LM's rows: the embeddings grow (and stay tied)
    big = assemble_from_parts(checkpoints / "siglip", checkpoints / "qwen2", delta_config=DELTA,
                              token_ids={**IDS, "video_token_id": 310, "delta_token_id": 311})
    assert big.get_input_embeddings().weight.shape[0] == 312 and big.config.text_config.vocab_size == 312
    assert big.lm_head.weight.shape[0] == 312
    assert torch.equal(big.get_input_embeddings().weight[:300], qwen)
    with torch.no_grad():
        assert big(**sample_inputs(big)).logits.shape[-1] == 312


def test_assemble_from_llava_onevision(checkpoints, tmp_path):
    model = assemble_from_llava_onevision(checkpoints / "llava", token_ids=IDS, delta_config=DELTA)
    assert_no_meta(model)
    # v5 writes LLaVA checkpoints with the legacy Hub key names: compare with the model loaded independently
    llava = LlavaOnevisionForConditionalGeneration.from_pretrained(checkpoints / "llava").eval()
    saved = llava.state_dict()
    assert_kept(model.model.vision_tower, saved, prefix="model.vision_tower.")
    assert_kept(model.model.multi_modal_projector, saved, prefix="model.multi_modal_projector.")
    assert_kept(model.model.language_model, saved, prefix="model.language_model.")
    assert torch.equal(model.lm_head.weight, saved["lm_head.weight"])
    assert model.config.vision_feature_layer == -2 and model.config.vision_feature_select_strategy == "full"
    assert not model.config.tie_word_embeddings
    assert isinstance(model.model.delta_encoder, CoPEDeltaEncoder)
    # keyframe features are LLaVA-OneVision's video features without its trailing image_newline
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ours = model.get_video_features(pixels).pooler_output
        theirs = llava.model.get_video_features(pixels[None]).pooler_output
    ours = ours.flatten(0, 1)  # (5.23 appends the newline in get_video_features, 5.17 in forward)
    torch.testing.assert_close(ours, theirs[0, : ours.shape[0]])
    model.save_pretrained(tmp_path)
    loaded = CoPEVideoLMForConditionalGeneration.from_pretrained(tmp_path).eval()
    inputs = sample_inputs(model)
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).logits, model(**inputs).logits, atol=0, rtol=0)


def test_pretrained_delta_encoder_and_residual_backbone(checkpoints, tmp_path):
    torch.manual_seed(3)
    encoder = CoPEDeltaEncoder(CoPEDeltaConfig(output_size=32, **DELTA))
    copied = init_residual_backbone(encoder, checkpoints / "resnet")
    resnet = load_file(checkpoints / "resnet" / "model.safetensors")
    stem = encoder.residual_embeddings.backbone.embedder.embedder.convolution.weight
    assert "embedder.embedder.convolution.weight" in copied and stem.shape[1] == 4
    assert torch.equal(stem[:, :3], resnet["embedder.embedder.convolution.weight"]) and not stem[:, 3].any()
    assert any(name.startswith("encoder.stages.1.") for name in copied)
    encoder.save_pretrained(tmp_path / "delta")
    model = assemble_from_parts(checkpoints / "siglip", checkpoints / "qwen2", token_ids=IDS,
                                delta_encoder=tmp_path / "delta")
    assert_kept(model.model.delta_encoder, load_file(tmp_path / "delta" / "model.safetensors"))
    with pytest.raises(ValueError, match="no ResNet parameter"):
        init_residual_backbone(encoder, ResNetModel(ResNetConfig(embedding_size=4, hidden_sizes=[4], depths=[1])))


def test_assemble_from_dual_encoder_checkpoint(checkpoints, tmp_path):
    """A full SigLIP (vision + text towers) checkpoint: only its vision half is used."""
    from transformers import SiglipConfig, SiglipModel

    SiglipModel(SiglipConfig(vision_config=VISION, text_config=dict(
        vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
    ))).save_pretrained(tmp_path / "siglip_full")
    model = assemble_from_parts(tmp_path / "siglip_full", checkpoints / "qwen2", token_ids=IDS, delta_config=DELTA)
    full = SiglipModel.from_pretrained(tmp_path / "siglip_full")
    assert type(model.model.vision_tower).__name__ == "SiglipVisionModel"
    assert_kept(model.model.vision_tower, full.vision_model.state_dict())
    with torch.no_grad():
        assert torch.isfinite(model(**sample_inputs(model)).logits).all()
