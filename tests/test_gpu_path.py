"""The GPU path, checked on a CPU-only machine.

Why: GPUs reach this project only now and then; the first paper-size GPU run crashed in the benchmark's report on a
tensor built on the host (`torch.isin` with CUDA input_ids) that no CPU test could see. Here:
  * the prefill forward and the benchmarks' tensor builders run on *fake CUDA tensors* (torch's FakeTensorMode: no
    GPU, no data). A fake tensor refuses any mix with a CPU tensor (FakeTensorDeviceMismatchError) and any host read
    (`.item()`, `.tolist()`, `bool(tensor)`, `nonzero`: DataDependentOutputException), so these tests fail on a
    tensor built without a device and on a host sync in the forward;
  * the sync-free placeholder merge gives exactly what `masked_scatter` gave (the code before it);
  * the encoders' feature path compiles with `fullgraph=True` (no graph break = no host read), and `compile_encoders`
    keeps the outputs;
  * static-cache and compiled decoding give eager's tokens.
"""

import sys
from pathlib import Path

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from test_modeling_cope import DELTA, VIDEO, build_model, make_sample  # noqa: E402

from transformers_cope.modeling_cope import CoPEVideoLMForConditionalGeneration  # noqa: E402

LAYOUT = "IPPPIPPP"


@pytest.fixture(scope="module")
def model():
    return build_model()


@pytest.fixture(scope="module")
def sample(model):
    return make_sample(LAYOUT, model.config, seed=3)


def fake_cuda_call(model, inputs: dict, **kwargs):
    """`model(**inputs, **kwargs)` with every parameter, buffer and input as a fake tensor on "cuda"."""
    mode = FakeTensorMode()
    state = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    with mode:
        fake_state = {k: mode.from_tensor(v).to("cuda") for k, v in state.items()}
        fake_inputs = {k: mode.from_tensor(v).to("cuda") if isinstance(v, torch.Tensor) else v
                       for k, v in inputs.items()}
        with torch.no_grad():
            return torch.func.functional_call(model, fake_state, (), {**fake_inputs, **kwargs}, strict=False)


@pytest.mark.parametrize(("attn", "use_cache"), [("sdpa", True), ("eager", False)])
def test_prefill_on_fake_cuda_follows_the_device_without_host_syncs(sample, attn, use_cache):
    model = build_model()
    model.set_attn_implementation(attn)
    out = fake_cuda_call(model, sample, use_cache=use_cache, logits_to_keep=1)
    assert out.logits.device.type == "cuda" and out.logits.shape[:2] == (1, 1)
    assert out.video_hidden_states.device.type == "cuda" and out.delta_hidden_states.device.type == "cuda"


def test_fake_cuda_check_catches_a_host_tensor_and_a_host_sync(model, sample):
    """The check itself can fail: the code before this change (a count read back with int()) and a tensor built on
    the host both raise under fake CUDA."""
    from torch._subclasses.fake_tensor import DataDependentOutputException, FakeTensorDeviceMismatchError

    mode = FakeTensorMode()
    with mode:
        ids = mode.from_tensor(sample["input_ids"]).to("cuda")
        with pytest.raises(FakeTensorDeviceMismatchError):
            torch.isin(ids, torch.tensor([VIDEO, DELTA]))
        with pytest.raises(DataDependentOutputException):
            int((ids == VIDEO).sum())


def test_benchmark_tensor_builders_follow_input_ids_device(model, sample):
    """What the benchmarks build next to the model: the visual-token mask (the crash of the first GPU run), the moved
    processor batch, and LLaVA-OneVision's inputs, all on fake CUDA."""
    from _gpu import to_device, visual_token_mask
    from _llava_ov import build_llava_ov, llava_inputs, llava_video_tokens

    llava = build_llava_ov(model.config, "cpu", torch.float32, "sdpa")
    prompt = sample["input_ids"][0].tolist()  # host-side ids, as the benchmark passes them
    mode = FakeTensorMode()
    with mode:
        ids = mode.from_tensor(sample["input_ids"]).to("cuda")
        mask = visual_token_mask(ids, [VIDEO, DELTA])
        assert mask.device.type == "cuda" and mask.shape == ids.shape
        moved = to_device({k: mode.from_tensor(v) if isinstance(v, torch.Tensor) else v for k, v in sample.items()},
                          "cuda", torch.bfloat16, ("pixel_values_videos",))
        assert all(v.device.type == "cuda" for v in moved.values() if isinstance(v, torch.Tensor))
        assert moved["pixel_values_videos"].dtype == torch.bfloat16 and moved["input_ids"].dtype == torch.long
        llava_in = llava_inputs(llava, prompt, {VIDEO, DELTA}, 2, "cuda", torch.bfloat16)
        assert {v.device.type for v in llava_in.values()} == {"cuda"}
    # on real tensors the placeholder count is LLaVA-OneVision's: frames x ceil(8 / 2)^2 + 1 newline
    real = llava_inputs(llava, prompt, {VIDEO, DELTA}, 2, "cpu", torch.float32)
    assert int((real["input_ids"] == llava.config.video_token_id).sum()) == llava_video_tokens(llava, 2) == 33
    with torch.no_grad():
        assert llava(**real).logits.shape[1] == real["input_ids"].shape[1]


def reference_prefill(model, sample):
    """The prefill as it was before the sync-free merge: features written with masked_scatter, one kind at a time."""
    inner = model.model
    embeds = inner.get_input_embeddings()(sample["input_ids"])
    video = inner.get_video_features(sample["pixel_values_videos"]).pooler_output.flatten(0, 1)
    delta = inner.get_delta_features(sample["delta_motion_vectors"], sample["delta_residuals"]).pooler_output
    for token, feats in ((VIDEO, video), (DELTA, delta.flatten(0, 1))):
        mask = (sample["input_ids"] == token).unsqueeze(-1).expand_as(embeds)
        embeds = embeds.masked_scatter(mask, feats.to(embeds.dtype))
    hidden = inner.language_model(inputs_embeds=embeds, use_cache=False).last_hidden_state
    return model.lm_head(hidden)


def test_merge_equals_masked_scatter_before_the_change(model, sample):
    with torch.no_grad():
        got = model(**sample, use_cache=False).logits
        expected = reference_prefill(model, sample)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_merge_in_a_padded_batch_equals_masked_scatter(model):
    """Two samples of different layouts, left-padded: placeholders are filled row-major, as masked_scatter did."""
    a, b = make_sample("IPP", model.config, seed=1), make_sample("IPPPIP", model.config, seed=2)
    length = max(a["input_ids"].shape[1], b["input_ids"].shape[1])
    pad = lambda ids: torch.cat([torch.zeros(1, length - ids.shape[1], dtype=ids.dtype), ids], 1)  # noqa: E731
    batch = {
        "input_ids": torch.cat([pad(a["input_ids"]), pad(b["input_ids"])]),
        "pixel_values_videos": torch.cat([a["pixel_values_videos"], b["pixel_values_videos"]]),
        "delta_motion_vectors": torch.cat([a["delta_motion_vectors"], b["delta_motion_vectors"]]),
        "delta_residuals": torch.cat([a["delta_residuals"], b["delta_residuals"]]),
    }
    inner = model.model
    with torch.no_grad():
        embeds = inner.get_input_embeddings()(batch["input_ids"])
        video = inner.get_video_features(batch["pixel_values_videos"]).pooler_output.flatten(0, 1)
        delta = inner.get_delta_features(batch["delta_motion_vectors"], batch["delta_residuals"]).pooler_output
        parts = [(batch["input_ids"] == VIDEO, video, "Video", "<|video_pad|>", "pixel_values_videos"),
                 (batch["input_ids"] == DELTA, delta.flatten(0, 1), "Delta", "<|delta_pad|>", "delta")]
        got = inner._merge_features(embeds, parts)
        expected = embeds
        for mask, feats, *_ in parts:
            expected = expected.masked_scatter(mask.unsqueeze(-1).expand_as(expected), feats)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_placeholder_count_mismatch_is_still_a_clear_error_on_cpu(model, sample):
    bad = dict(sample, delta_motion_vectors=sample["delta_motion_vectors"][:-1],
               delta_residuals=sample["delta_residuals"][:-1])
    with pytest.raises(ValueError, match="Delta placeholders and features do not match: input has 48 <|delta_pad|>"):
        model(**bad, use_cache=False)


def test_encoder_feature_paths_compile_fullgraph(model, sample):
    """fullgraph=True refuses any graph break, and a host read (.item(), .tolist(), bool(tensor)) is one; a fresh
    model, so `compile_encoders` must also take care of Transformers' lazily installed output hooks."""
    torch._dynamo.reset()
    inner = build_model().model.compile_encoders(backend="eager", fullgraph=True)
    reference = model.model
    with torch.no_grad():
        torch.testing.assert_close(inner.get_video_features(sample["pixel_values_videos"]).pooler_output,
                                   reference.get_video_features(sample["pixel_values_videos"]).pooler_output)
        got = inner.get_delta_features(sample["delta_motion_vectors"], sample["delta_residuals"]).pooler_output
        torch.testing.assert_close(
            got, reference.get_delta_features(sample["delta_motion_vectors"], sample["delta_residuals"]).pooler_output)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 2


def test_compile_encoders_keeps_the_outputs(sample):
    torch._dynamo.reset()
    eager = build_model()
    compiled = build_model()
    compiled.model.compile_encoders(backend="aot_eager", fullgraph=True)
    with torch.no_grad():
        expected = eager(**sample, use_cache=False).logits
        got = compiled(**sample, use_cache=False).logits
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 2  # both encoder paths were captured


def test_static_and_compiled_decoding_give_eager_tokens(sample):
    """bench_decode's three modes on the tiny model; compiled = static cache + compile_config (aot_eager: dynamo
    capture and AOT autograd without C++ code generation, so it runs in CI)."""
    from bench_decode import measure_decode

    torch._dynamo.reset()
    model = build_model()
    rows, outputs = measure_decode(model, sample, "cpu", new_tokens=6, repeats=1, compile_backend="aot_eager")
    assert [r[0] for r in rows] == ["eager", "static", "compiled"]
    assert all(r[1] != "failed" for r in rows), rows
    assert [r[3] for r in rows] == ["yes", "yes", "yes"], rows
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1  # the decode step really was compiled
    assert outputs["eager"].shape[1] == sample["input_ids"].shape[1] + 6


def test_build_model_classes_are_the_public_ones():
    assert build_model().__class__ is CoPEVideoLMForConditionalGeneration
