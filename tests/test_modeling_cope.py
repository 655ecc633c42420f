"""Model tests on tiny configs: layout, scatter order, save/load, generation with cache, batching, attention
backends, gradient checkpointing, errors and token accounting."""

import json

import pytest
import torch
from transformers import AutoConfig, AutoModel, AutoModelForImageTextToText, Qwen2Config, SiglipVisionConfig

from transformers_cope.configuration_cope import (
    CoPEDeltaConfig,
    CoPEVideoLMConfig,
    count_video_tokens,
    gop_frame_types,
)
from transformers_cope.modeling_cope import (
    CACHE_KWARG,
    CoPEDeltaEncoder,
    CoPEVideoLMForConditionalGeneration,
    CoPEVideoLMModel,
)

VIDEO, DELTA, NEWLINE, DELTA_END, V_START, V_END, PAD = 300, 301, 302, 303, 304, 305, 0
TEXT_IDS = (1, 290)  # ordinary text tokens are drawn from this range


def tiny_config(**overrides) -> CoPEVideoLMConfig:
    """Vision 32 px / patch 4 / hidden 32 (8x8 patches -> 4x4 = 16 pooled tokens), Qwen2 hidden 64 x 2 layers,
    Δ-encoder hidden 32 with a 2-stage ResNet of width 8/16."""
    kwargs = dict(
        vision_config=SiglipVisionConfig(
            image_size=32, patch_size=4, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=2, vision_use_head=False,
        ),
        text_config=Qwen2Config(
            vocab_size=320, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=1024, initializer_range=0.2, pad_token_id=PAD,
        ),
        delta_config=CoPEDeltaConfig(
            hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
            residual_embedding_size=8, residual_hidden_sizes=[8, 16], residual_depths=[1, 1],
        ),
        video_token_id=VIDEO, delta_token_id=DELTA, frame_newline_token_id=NEWLINE, delta_end_token_id=DELTA_END,
        vision_start_token_id=V_START, vision_end_token_id=V_END,
    )
    kwargs.update(overrides)
    return CoPEVideoLMConfig(**kwargs)


def build_model(seed: int = 0, **overrides) -> CoPEVideoLMForConditionalGeneration:
    torch.manual_seed(seed)
    model = CoPEVideoLMForConditionalGeneration(tiny_config(**overrides)).eval()
    model.generation_config.pad_token_id = PAD
    model.generation_config.eos_token_id = None
    return model


def video_token_ids(frame_types: str, config: CoPEVideoLMConfig) -> list[int]:
    """The processor's expansion: per I step rows of <|video_pad|> + <|frame_newline|>, per P step 8 x <|delta_pad|>
    + <|delta_end|>."""
    rows, cols = config.keyframe_grid
    ids = [V_START]
    for t in frame_types:
        if t == "I":
            ids += ([VIDEO] * cols + [NEWLINE]) * rows
        else:
            ids += [DELTA] * config.delta_tokens_per_step + [DELTA_END]
    return ids + [V_END]


def make_sample(frame_types: str, config: CoPEVideoLMConfig, seed: int, prompt_len: int = 3, question_len: int = 4):
    """input_ids (1, L) and the video tensors of one sample, in the CONTRACTS shapes (64 px codec frames)."""
    g = torch.Generator().manual_seed(seed)
    text = lambda n: torch.randint(*TEXT_IDS, (n,), generator=g).tolist()  # noqa: E731
    ids = text(prompt_len) + video_token_ids(frame_types, config) + text(question_len)
    n_i, n_p = frame_types.count("I"), frame_types.count("P")
    intra = (torch.rand(n_p, 1, 4, 4, generator=g) < 0.2).float()
    return {
        "input_ids": torch.tensor([ids]),
        "pixel_values_videos": torch.randn(n_i, 3, 32, 32, generator=g),
        "delta_motion_vectors": torch.cat([torch.randn(n_p, 2, 4, 4, generator=g), intra], dim=1),
        "delta_residuals": torch.randn(n_p, 3, 16, 16, generator=g),
    }


def left_pad_batch(samples: list[dict]) -> dict:
    length = max(s["input_ids"].shape[1] for s in samples)
    ids, mask = [], []
    for s in samples:
        n = s["input_ids"].shape[1]
        ids.append(torch.cat([torch.full((1, length - n), PAD), s["input_ids"]], dim=1))
        mask.append(torch.cat([torch.zeros(1, length - n, dtype=torch.long), torch.ones(1, n, dtype=torch.long)], 1))
    batch = {"input_ids": torch.cat(ids), "attention_mask": torch.cat(mask)}
    for key in ("pixel_values_videos", "delta_motion_vectors", "delta_residuals"):
        batch[key] = torch.cat([s[key] for s in samples])
    return batch


@pytest.fixture(scope="module")
def model():
    return build_model()


@pytest.fixture(scope="module")
def sample(model):
    return make_sample("IPPIPP", model.config, seed=1)


@pytest.fixture(scope="module", autouse=True)
def register_auto_classes():
    AutoConfig.register("cope_videolm", CoPEVideoLMConfig, exist_ok=True)
    AutoConfig.register("cope_delta", CoPEDeltaConfig, exist_ok=True)
    AutoModel.register(CoPEVideoLMConfig, CoPEVideoLMModel, exist_ok=True)
    AutoModel.register(CoPEDeltaConfig, CoPEDeltaEncoder, exist_ok=True)
    AutoModelForImageTextToText.register(CoPEVideoLMConfig, CoPEVideoLMForConditionalGeneration, exist_ok=True)


# ---------------------------------------------------------------------------------------------------------------- config


def test_config_round_trip_and_checks(tmp_path):
    config = tiny_config()
    assert config.image_token_id == config.video_token_id == VIDEO
    assert config.delta_config.output_size == config.vision_config.hidden_size == 32
    assert config.keyframe_grid == (4, 4) and config.tokens_per_keyframe == 16
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert type(loaded) is CoPEVideoLMConfig
    assert type(loaded.delta_config) is CoPEDeltaConfig and type(loaded.vision_config) is SiglipVisionConfig
    strip = lambda d: {k: v for k, v in d.items() if k != "_name_or_path"}  # noqa: E731
    assert strip(loaded.to_dict()) == strip(config.to_dict())
    assert loaded.delta_config.to_dict() == config.delta_config.to_dict()
    with pytest.raises(ValueError, match="image_token_id"):
        tiny_config(image_token_id=VIDEO + 7)
    with pytest.raises(ValueError, match="delta_tokens_per_step"):
        tiny_config(delta_tokens_per_step=9)
    with pytest.raises(ValueError, match="keyframes_per_gop"):
        tiny_config(keyframes_per_gop=9)
    tied = tiny_config(text_config={**tiny_config().text_config.to_dict(), "tie_word_embeddings": True})
    assert tied.tie_word_embeddings
    default = CoPEVideoLMConfig()  # paper size: SigLIP-384/14 -> 27x27 -> 14x14
    assert default.vision_grid == (27, 27) and default.tokens_per_keyframe == 196


def test_token_accounting_64s_clip():
    """64 s at 1 fps, 8-step GOPs: dense = 64 keyframes; k=1 = 8 keyframes + 56 Δ steps (paper numbers)."""
    paper = CoPEVideoLMConfig()
    dense = count_video_tokens(gop_frame_types(64, 8, 8), paper)
    assert dense["num_keyframes"] == 64 and dense["num_delta_steps"] == 0
    assert dense["tokens_per_keyframe"] == 210 and dense["total_tokens"] == 64 * 210 == 13_440
    cope = count_video_tokens(paper.frame_types_for(64), paper)
    assert paper.frame_types_for(16) == "IPPPPPPP" * 2
    assert cope["num_keyframes"] == 8 and cope["num_delta_steps"] == 56
    assert cope["tokens_per_delta_step"] == 9 and cope["total_tokens"] == 8 * 210 + 56 * 9 == 2_184
    assert paper.count_video_tokens("IPPPPPPP" * 8) == cope
    print(f"\n64 s clip @1 fps, GOP 8: dense {dense['total_tokens']} tokens, CoPE k=1 {cope['total_tokens']} tokens "
          f"({100 * cope['total_tokens'] / dense['total_tokens']:.1f}%)")
    for k, expected in ((2, 16 * 210 + 48 * 9), (4, 32 * 210 + 32 * 9)):
        assert count_video_tokens(gop_frame_types(64, 8, k), paper)["total_tokens"] == expected
    assert gop_frame_types(8, 8, 2) == "IPPPIPPP" and gop_frame_types(8, 8, 4) == "IPIPIPIP"
    bare = count_video_tokens("IPP", paper, use_row_newlines=False, use_delta_end=False)
    assert bare["total_tokens"] == 196 + 16 and bare["video_pad_tokens"] == 196 and bare["delta_pad_tokens"] == 16
    # the tiny layout the other tests build by hand agrees with the counter
    tiny = tiny_config()
    assert len(video_token_ids("IPPIPP", tiny)) - 2 == count_video_tokens("IPPIPP", tiny)["total_tokens"]
    with pytest.raises(ValueError, match="only contain"):
        count_video_tokens("IPB", paper)


# ---------------------------------------------------------------------------------------------------------------- model


def test_layout_and_no_split_modules(model):
    assert model.base_model_prefix == "model" and model.base_model is model.model
    m = model.model
    assert type(m.vision_tower).__name__ == "SiglipVisionModel"
    assert type(m.language_model).__name__ == "Qwen2Model"
    assert isinstance(m.delta_encoder, CoPEDeltaEncoder) and m.delta_encoder.config is model.config.delta_config
    backbone = m.delta_encoder.residual_embeddings.backbone  # ResNet's own stem and stages, not a nested PreTrainedModel
    assert (type(backbone.embedder).__name__, type(backbone.encoder).__name__) == ("ResNetEmbeddings", "ResNetEncoder")
    assert model.get_output_embeddings() is model.lm_head
    assert model.get_input_embeddings() is m.language_model.embed_tokens
    assert {"CoPEDeltaLayer", "Qwen2DecoderLayer", "SiglipEncoderLayer"} <= set(model._no_split_modules)
    assert model.config.image_token_id == model.config.video_token_id


def test_tokens_scattered_in_time_order(model, sample):
    """Every <|video_pad|> holds the next pooled keyframe token, every <|delta_pad|> the next Δ-token."""
    seen = {}
    handle = model.model.language_model.register_forward_pre_hook(
        lambda mod, args, kwargs: seen.update(embeds=kwargs["inputs_embeds"]), with_kwargs=True
    )
    with torch.no_grad():
        out = model(**sample)
        video = model.get_video_features(sample["pixel_values_videos"]).pooler_output
        delta = model.get_delta_features(sample["delta_motion_vectors"], sample["delta_residuals"]).pooler_output
    handle.remove()
    assert video.shape == (2, 16, 64) and delta.shape == (4, 8, 64)
    ids = sample["input_ids"][0]
    embeds = seen["embeds"][0]
    torch.testing.assert_close(embeds[ids == VIDEO], video.flatten(0, 1))
    torch.testing.assert_close(embeds[ids == DELTA], delta.flatten(0, 1))
    text = (ids != VIDEO) & (ids != DELTA)
    torch.testing.assert_close(embeds[text], model.get_input_embeddings()(ids[text]))
    assert out.logits.shape == (1, ids.shape[0], 320)
    assert out.video_hidden_states.shape == (32, 64) and out.delta_hidden_states.shape == (32, 64)


def test_delta_encoder_batched_equals_per_step(model, sample):
    enc = model.model.delta_encoder
    mv, res = sample["delta_motion_vectors"], sample["delta_residuals"]
    with torch.no_grad():
        batched = enc(mv, res).last_hidden_state
        single = torch.cat([enc(mv[i : i + 1], res[i : i + 1]).last_hidden_state for i in range(mv.shape[0])])
    assert batched.shape == (4, 8, 32)
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="Δ steps"):
        enc(mv, res[:2])


def test_save_load_round_trip_auto_classes(model, sample, tmp_path):
    model.save_pretrained(tmp_path)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert "model.safetensors" in files and not any(f.endswith((".bin", ".pt", ".pth")) for f in files)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "cope_videolm"
    loaded = AutoModelForImageTextToText.from_pretrained(tmp_path).eval()
    assert type(loaded) is CoPEVideoLMForConditionalGeneration
    with torch.no_grad():
        torch.testing.assert_close(loaded(**sample).logits, model(**sample).logits, atol=0, rtol=0)
    for key, value in model.state_dict().items():  # includes the Δ-encoder's BatchNorm buffers
        assert torch.equal(value, loaded.state_dict()[key]), key
    base = AutoModel.from_pretrained(tmp_path)
    assert type(base) is CoPEVideoLMModel
    torch.testing.assert_close(base.delta_encoder.output_proj.weight, model.model.delta_encoder.output_proj.weight)


def test_generate_cache_matches_no_cache(model, sample):
    kwargs = dict(**sample, attention_mask=torch.ones_like(sample["input_ids"]), max_new_tokens=6, do_sample=False)
    with torch.no_grad():
        cached = model.generate(**kwargs)
        uncached = model.generate(**kwargs, use_cache=False)
    assert cached.shape == (1, sample["input_ids"].shape[1] + 6)
    assert torch.equal(cached, uncached)
    assert len(set(cached[0, -6:].tolist())) > 1, "degenerate generation makes this test weak"


def test_prepare_inputs_drops_video_after_prefill(model, sample):
    from transformers import DynamicCache

    ids = sample["input_ids"]
    kw = {k: v for k, v in sample.items() if k != "input_ids"}
    first = model.prepare_inputs_for_generation(
        ids, attention_mask=torch.ones_like(ids), **{CACHE_KWARG: DynamicCache(config=model.config)},
        is_first_iteration=True, use_cache=True, video_compression_mask=None, **kw,
    )
    assert first["delta_motion_vectors"] is not None and first["pixel_values_videos"] is not None
    later = model.prepare_inputs_for_generation(
        ids, attention_mask=torch.ones_like(ids), **{CACHE_KWARG: DynamicCache(config=model.config)},
        is_first_iteration=False, use_cache=True, **kw,
    )
    assert not {"pixel_values_videos", "delta_motion_vectors", "delta_residuals"} & set(later)


def test_batched_left_padding_matches_single(model):
    samples = [make_sample("IPPIP", model.config, seed=2), make_sample("IPPP", model.config, seed=3, question_len=9)]
    batch = left_pad_batch(samples)
    assert batch["attention_mask"][1].sum() < batch["attention_mask"].shape[1]  # really padded
    with torch.no_grad():
        batched = model.generate(**batch, max_new_tokens=5, do_sample=False)
        for i, s in enumerate(samples):
            single = model.generate(**s, attention_mask=torch.ones_like(s["input_ids"]), max_new_tokens=5,
                                    do_sample=False)
            assert torch.equal(batched[i, -5:], single[0, -5:]), i
            logits_b = model(**batch).logits[i, -1]
            logits_s = model(**s).logits[0, -1]
            torch.testing.assert_close(logits_b, logits_s, atol=1e-4, rtol=1e-4)


def test_expand_inputs_for_beams_keeps_sample_order(model):
    """num_return_sequences / beams repeat each sample; the flat video tensors must follow sample by sample."""
    samples = [make_sample("IPPIP", model.config, seed=7), make_sample("IPPP", model.config, seed=8)]
    batch = left_pad_batch(samples)
    keep = torch.ones(3 * 16, dtype=torch.bool)
    keep[[3, 20, 40]] = False  # one token pruned in each keyframe
    ids = batch["input_ids"].clone()
    for b, k in ((0, 3), (0, 20), (1, 8)):  # drop the matching placeholders (sample 1 holds keyframe 2)
        positions = (ids[b] == VIDEO).nonzero()[:, 0]
        ids[b, positions[k]] = 7
    batch["input_ids"], batch["video_compression_mask"] = ids, keep
    expanded_ids, expanded = model._expand_inputs_for_generation(expand_size=3, **batch)
    assert expanded_ids.shape[0] == 6 and expanded["pixel_values_videos"].shape[0] == 9
    assert expanded["delta_motion_vectors"].shape[0] == 18 and expanded["video_compression_mask"].shape[0] == 9 * 16
    with torch.no_grad():
        reference = model(**batch).logits
        repeated = model(input_ids=expanded_ids, **{k: v for k, v in expanded.items() if k != "input_ids"}).logits
    torch.testing.assert_close(repeated, reference.repeat_interleave(3, dim=0), atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=3, num_beams=2, num_return_sequences=2, do_sample=False)
    assert out.shape[0] == 4


def test_eager_matches_sdpa(model, sample, tmp_path):
    model.save_pretrained(tmp_path)
    eager = CoPEVideoLMForConditionalGeneration.from_pretrained(tmp_path, attn_implementation="eager").eval()
    sdpa = CoPEVideoLMForConditionalGeneration.from_pretrained(tmp_path, attn_implementation="sdpa").eval()
    for m, impl in ((eager, "eager"), (sdpa, "sdpa")):
        assert m.model.delta_encoder.config._attn_implementation == impl
        assert m.model.vision_tower.config._attn_implementation == impl
        assert m.model.language_model.config._attn_implementation == impl
    with torch.no_grad():
        torch.testing.assert_close(eager(**sample).logits, sdpa(**sample).logits, atol=1e-4, rtol=1e-4)
    sdpa.set_attn_implementation("eager")
    assert sdpa.model.delta_encoder.config._attn_implementation == "eager"


def test_gradient_checkpointing_training_step(sample):
    model = build_model(seed=4).train()
    enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
    enable()
    calls = []
    layer = model.model.delta_encoder.motion_transformer.layers[0]
    assert layer.gradient_checkpointing
    handle = layer.layer_norm1.register_forward_hook(lambda *a: calls.append(1))  # inside the checkpointed forward
    labels = sample["input_ids"].clone()
    labels[(labels == VIDEO) | (labels == DELTA)] = -100
    out = model(**sample, labels=labels, use_cache=False)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    handle.remove()
    assert len(calls) == 2, "the Δ layer should be recomputed in backward"
    for name in ("delta_encoder.motion_transformer.queries", "delta_encoder.residual_embeddings.backbone",
                 "delta_encoder.output_proj.weight", "multi_modal_projector.linear_1.weight",
                 "vision_tower.encoder.layers.0", "language_model.layers.0"):
        grads = [p.grad for n, p in model.model.named_parameters() if n.startswith(name)]
        assert grads and all(g is not None and g.abs().sum() > 0 for g in grads), name
    before = model.model.delta_encoder.output_proj.weight.detach().clone()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    assert not torch.equal(before, model.model.delta_encoder.output_proj.weight)


def test_inputs_embeds_matches_input_ids(model, sample):
    inputs = {k: v for k, v in sample.items() if k != "input_ids"}
    with torch.no_grad():
        embeds = model.get_input_embeddings()(sample["input_ids"])
        from_ids = model(**sample).logits
        from_embeds = model(inputs_embeds=embeds, **inputs).logits
        base = model.model(**sample)  # TRL calls model.model(...) with every multimodal input
    torch.testing.assert_close(from_embeds, from_ids)
    torch.testing.assert_close(model.lm_head(base.last_hidden_state), from_ids)


def test_output_hidden_states_and_loss(model, sample):
    with torch.no_grad():
        out = model(**sample, output_hidden_states=True, labels=sample["input_ids"])
    assert len(out.hidden_states) == model.config.text_config.num_hidden_layers + 1
    assert out.hidden_states[0].shape == (1, sample["input_ids"].shape[1], 64)
    assert out.loss is not None and torch.isfinite(out.loss)
    assert isinstance(model(**sample, return_dict=False), tuple)


def test_placeholder_feature_mismatch_raises(model, sample):
    ids = sample["input_ids"]
    inputs = {k: v for k, v in sample.items() if k != "input_ids"}
    first_video = int((ids[0] == VIDEO).nonzero()[0])
    fewer_video = ids.clone()
    fewer_video[0, first_video] = 7
    with pytest.raises(ValueError, match=r"31 <\|video_pad\|> tokens but pixel_values_videos give 32"):
        model(input_ids=fewer_video, **inputs)
    first_delta = int((ids[0] == DELTA).nonzero()[0])
    more_delta = ids.clone()
    more_delta[0, first_delta - 1] = DELTA
    with pytest.raises(ValueError, match=r"33 <\|delta_pad\|> tokens but .* give 32"):
        model(input_ids=more_delta, **inputs)
    # As upstream VLMs: counts are checked only against media that were passed. Without them (decode steps, an
    # assistant's prefill, text-only use) placeholder ids are plain tokens.
    assert model(input_ids=ids).logits.shape[1] == ids.shape[1]
    assert model(input_ids=ids, pixel_values_videos=sample["pixel_values_videos"]).logits.shape[1] == ids.shape[1]
    with pytest.raises(ValueError, match="together"):
        model(input_ids=ids, pixel_values_videos=sample["pixel_values_videos"],
              delta_motion_vectors=sample["delta_motion_vectors"])
    with pytest.raises(ValueError, match="video_frame_types"):
        model(**sample, video_frame_types=["IPPIP"])


def test_video_compression_mask_drops_tokens(model, sample):
    """Pruned keyframe tokens lose their placeholders; the kept ones get the matching features."""
    keep = torch.ones(32, dtype=torch.bool)
    keep[[17, 18, 21, 30]] = False  # tokens of the second keyframe
    ids = sample["input_ids"][0].tolist()
    video_positions = [i for i, t in enumerate(ids) if t == VIDEO]
    dropped = {video_positions[j] for j in (17, 18, 21, 30)}
    pruned_ids = torch.tensor([[t for i, t in enumerate(ids) if i not in dropped]])
    inputs = {k: v for k, v in sample.items() if k != "input_ids"}
    with torch.no_grad():
        out = model(input_ids=pruned_ids, video_compression_mask=keep, **inputs)
        full = model.get_video_features(sample["pixel_values_videos"]).pooler_output.flatten(0, 1)
    torch.testing.assert_close(out.video_hidden_states, full[keep])
    with pytest.raises(ValueError, match="video_compression_mask"):
        model(input_ids=pruned_ids, video_compression_mask=keep[:-1], **inputs)
    with torch.no_grad():
        generated = model.generate(input_ids=pruned_ids, attention_mask=torch.ones_like(pruned_ids),
                                   video_compression_mask=keep, max_new_tokens=3, do_sample=False, **inputs)
    assert generated.shape[1] == pruned_ids.shape[1] + 3


def test_dense_baseline_all_keyframes():
    model = build_model(seed=5, keyframes_per_gop=8)
    frame_types = model.config.frame_types_for(8)
    assert frame_types == "I" * 8
    s = make_sample(frame_types, model.config, seed=6)
    assert s["delta_motion_vectors"].shape[0] == 0
    with torch.no_grad():
        out = model(input_ids=s["input_ids"], pixel_values_videos=s["pixel_values_videos"])
        # The processor's dense output carries empty Δ tensors: they must be accepted, not fed to the Δ-encoder.
        with_empty = model(input_ids=s["input_ids"], pixel_values_videos=s["pixel_values_videos"],
                           delta_motion_vectors=s["delta_motion_vectors"], delta_residuals=s["delta_residuals"])
    assert out.video_hidden_states.shape == (8 * 16, 64) and out.delta_hidden_states is None
    assert with_empty.delta_hidden_states is None and torch.equal(with_empty.logits, out.logits)
    assert count_video_tokens(frame_types, model.config)["total_tokens"] == s["input_ids"].shape[1] - 2 - 3 - 4


def test_delta_encoder_reads_small_motion_at_init():
    """Regression: at full scale the sin-cos positions swamped 2 px motion (relative difference ~0.002 between a
    left and a right field), and a tiny model trained on the synthetic direction task stayed at chance."""
    from transformers_cope import CoPEDeltaConfig, CoPEDeltaEncoder
    from transformers_cope.tiny import tiny_model_config

    def sensitivity(scale):
        torch.manual_seed(0)
        delta = tiny_model_config().delta_config.to_dict()
        delta["position_embedding_scale"] = scale
        encoder = CoPEDeltaEncoder(CoPEDeltaConfig(**delta)).eval()
        motion = torch.zeros(2, 3, 4, 4)
        motion[0, 0, 1:3, 1:3], motion[1, 0, 1:3, 1:3] = 0.1, -0.1  # 2 px right vs 2 px left, / mv_normalizer 20
        with torch.no_grad():
            tokens = encoder(motion, torch.zeros(2, 3, 16, 16)).motion_hidden_states
        return ((tokens[0] - tokens[1]).norm() / tokens.norm(dim=-1).mean()).item()

    assert CoPEDeltaConfig().position_embedding_scale == 0.02
    assert sensitivity(0.02) > 0.05 > 0.01 > sensitivity(1.0)
