"""Every `GenerationMixin` path an HF user reaches by a `generate` option, token-exact against plain greedy on a tiny
CoPE-VideoLM with video inputs: assisted decoding (CoPE and text-only assistants), `inputs_embeds`,
continue-from-cache, static cache, a `torch.compile(fullgraph=True)` decode step, beam/sample cache equivalence,
`logits_to_keep` and left padding. Runs on the installed Transformers (5.25 uses `cache`, 5.17 `past_key_values`)."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from test_modeling_cope import PAD, build_model, left_pad_batch, make_sample
from transformers import DynamicCache, Qwen2Config, Qwen2ForCausalLM, StaticCache

from transformers_cope.modeling_cope import CACHE_KWARG

NEW = 6


@pytest.fixture(scope="module")
def model():
    return build_model()


@pytest.fixture(scope="module")
def sample(model):
    return make_sample("IPPIPP", model.config, seed=1)


@pytest.fixture(scope="module")
def greedy(model, sample):
    out = model.generate(**sample, max_new_tokens=NEW, do_sample=False)
    assert len(set(out[0, -NEW:].tolist())) > 1, "degenerate generation makes these tests weak"
    return out


def test_cope_assistant_equals_greedy(model, sample, greedy):
    """The assistant is another (differently initialised) CoPE model: its prefill sees no video (5.25 runs it as a
    later iteration), so its placeholders are plain tokens; the target model's verification keeps greedy exact."""
    assistant = build_model(seed=3)
    out = model.generate(**sample, max_new_tokens=NEW, do_sample=False, assistant_model=assistant)
    assert torch.equal(out, greedy)


def test_text_only_assistant_equals_greedy(model, sample, greedy):
    torch.manual_seed(5)
    text = model.config.text_config
    assistant = Qwen2ForCausalLM(Qwen2Config(
        vocab_size=text.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=1024, pad_token_id=PAD,
    )).eval()
    assistant.generation_config.pad_token_id = PAD
    out = model.generate(**sample, max_new_tokens=NEW, do_sample=False, assistant_model=assistant)
    assert torch.equal(out, greedy)


def test_inputs_embeds_equals_greedy(model, sample, greedy):
    """Placeholders are found by comparing `inputs_embeds` with the placeholder embeddings, as upstream VLMs do."""
    ids = sample["input_ids"]
    video = {k: v for k, v in sample.items() if k != "input_ids"}
    embeds = model.get_input_embeddings()(ids)
    out = model.generate(inputs_embeds=embeds, attention_mask=torch.ones_like(ids), **video,
                         max_new_tokens=NEW, do_sample=False)
    assert torch.equal(out, greedy[:, ids.shape[1]:])  # with inputs_embeds only the new tokens come back


def test_continue_from_cache_equals_greedy(model, sample, greedy):
    """Half the tokens, then the rest from the returned cache with text-only input (the video is in the cache)."""
    first = model.generate(**sample, max_new_tokens=NEW // 2, do_sample=False, return_dict_in_generate=True)
    cache = first[CACHE_KWARG] if CACHE_KWARG in first else first.past_key_values
    assert cache.get_seq_length() == first.sequences.shape[1] - 1
    rest = model.generate(first.sequences, attention_mask=torch.ones_like(first.sequences),
                          max_new_tokens=NEW - NEW // 2, do_sample=False, **{CACHE_KWARG: cache})
    assert torch.equal(rest, greedy)


def test_static_cache_equals_greedy(model, sample, greedy):
    out = model.generate(**sample, max_new_tokens=NEW, do_sample=False, cache_implementation="static")
    assert torch.equal(out, greedy)


def _decode_greedily(model, forward, sample, steps: int) -> list[int]:
    """Prefill eagerly (video inputs: data-dependent scatter), then `steps` decode steps through `forward`."""
    ids = sample["input_ids"]
    cache = StaticCache(config=model.config.text_config, max_cache_len=ids.shape[1] + steps + 1)
    with torch.no_grad():
        out = model(**sample, use_cache=True, **{CACHE_KWARG: cache})
        token = out.logits[:, -1:].argmax(-1)
        tokens = [int(token)]
        for step in range(steps - 1):
            position = torch.tensor([[ids.shape[1] + step]])
            out = forward(input_ids=token, position_ids=position, use_cache=True, **{CACHE_KWARG: cache})
            token = out.logits[:, -1:].argmax(-1)
            tokens.append(int(token))
    return tokens


@pytest.mark.parametrize(
    "backend",
    # Dynamo's full-graph capture is what `fullgraph=True` checks (a graph break raises); the "eager" backend runs the
    # captured graph without code generation (seconds). Inductor's code generation takes minutes on 2 CPU cores.
    ["eager", pytest.param("inductor", marks=pytest.mark.slow)],
)
def test_compiled_decode_step_equals_eager(model, sample, greedy, backend):
    """The decode step holds no data-dependent op once the video sits in the cache: `fullgraph=True` compiles it
    (a graph break would raise), and its tokens equal eager greedy's."""
    torch._dynamo.reset()
    compiled = torch.compile(model.forward, fullgraph=True, backend=backend)
    eager_tokens = _decode_greedily(model, model.forward, sample, NEW)
    assert eager_tokens == greedy[0, -NEW:].tolist()
    assert _decode_greedily(model, compiled, sample, NEW) == eager_tokens


def test_beam_and_sample_cached_equal_uncached(model, sample):
    """Beam search repeats the flat video tensors per beam; sampling with a fixed seed; both with and without cache."""
    beams = [model.generate(**sample, max_new_tokens=4, num_beams=3, do_sample=False, use_cache=c) for c in (True, False)]
    assert torch.equal(*beams)
    sampled = []
    for use_cache in (True, False):
        torch.manual_seed(11)
        sampled.append(model.generate(**sample, max_new_tokens=4, do_sample=True, top_k=5, use_cache=use_cache,
                                      num_return_sequences=2))
    assert torch.equal(*sampled) and sampled[0].shape[0] == 2


def test_logits_to_keep_and_left_padding(model, greedy):
    """`logits_to_keep=1` gives the last position's logits unchanged; a left-padded batch generates what each
    sample generates alone."""
    first = make_sample("IPPIPP", model.config, seed=1)
    second = make_sample("IPP", model.config, seed=2, question_len=9)
    with torch.no_grad():
        full = model(**first).logits
        last = model(**first, logits_to_keep=1).logits
    torch.testing.assert_close(last[:, -1], full[:, -1])
    assert last.shape[1] == 1
    batch = left_pad_batch([first, second])
    together = model.generate(**batch, max_new_tokens=NEW, do_sample=False)
    alone = model.generate(**second, max_new_tokens=NEW, do_sample=False)
    assert torch.equal(together[0, -NEW:], greedy[0, -NEW:])
    assert torch.equal(together[1, -NEW:], alone[0, -NEW:])


def test_decode_step_placeholder_is_a_plain_token(model, sample):
    """A placeholder id produced in a decode step (or passed without media) does not trip the count check."""
    cache = DynamicCache(config=model.config.text_config)
    with torch.no_grad():
        model(**sample, use_cache=True, **{CACHE_KWARG: cache})
        out = model(input_ids=torch.tensor([[model.config.delta_token_id]]), use_cache=True, **{CACHE_KWARG: cache})
    assert out.logits.shape == (1, 1, model.config.text_config.vocab_size)


def test_past_key_values_alias_is_accepted(model, sample):
    """`past_key_values` and `cache` name one argument. Where the release says `cache` (5.2x) the old name warns
    as upstream models do (FutureWarning, removal in 5.40); on 5.17 it is the release's own name and stays silent.
    Two different caches at once are an error."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with torch.no_grad():
            a = model(**sample, use_cache=True, past_key_values=DynamicCache(config=model.config.text_config))
    warned = any("`past_key_values` is deprecated" in str(w.message) for w in caught)
    assert warned == (CACHE_KWARG == "cache")
    with torch.no_grad():
        b = model(**sample, use_cache=True, **{CACHE_KWARG: DynamicCache(config=model.config.text_config)})
    torch.testing.assert_close(a.logits, b.logits)
    if CACHE_KWARG == "past_key_values":
        with pytest.raises(ValueError, match="once"):
            model(**sample, cache=DynamicCache(config=model.config.text_config),
                  past_key_values=DynamicCache(config=model.config.text_config))


def test_embedded_model_generates_without_future_warning(tmp_path):
    """`python -W error::FutureWarning`: generating with the embedded default model on a real-codec video emits no
    deprecation warning on the installed Transformers (the `cache` rename on 5.25)."""
    code = textwrap.dedent(
        f"""
        import warnings
        warnings.simplefilter("error", DeprecationWarning)
        import numpy as np
        from transformers_cope.embedded import DEFAULT_MODEL_DIR
        from transformers import AutoProcessor
        from transformers_cope.modeling_cope import CoPEVideoLMForConditionalGeneration
        import transformers_cope  # registers the auto classes
        model = CoPEVideoLMForConditionalGeneration.from_pretrained(DEFAULT_MODEL_DIR).eval()
        processor = AutoProcessor.from_pretrained(DEFAULT_MODEL_DIR)
        frames = np.zeros((8, 64, 64, 3), dtype=np.uint8)
        for t in range(8):
            frames[t, 20:40, 10 + 3 * t:30 + 3 * t] = 255
        text = processor.apply_chat_template(
            [{{"role": "user", "content": [{{"type": "video"}}, {{"type": "text", "text": "Which direction?"}}]}}],
            add_generation_prompt=True)
        inputs = processor(videos=[frames], text=text, return_tensors="pt")
        out = model.generate(**inputs, max_new_tokens=4, do_sample=False)
        print("OK", out.shape[1] - inputs["input_ids"].shape[1])
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in [str(Path(__file__).parents[1] / "src"),
                                                                     os.environ.get("PYTHONPATH", "")] if p)}
    proc = subprocess.run([sys.executable, "-W", "error::FutureWarning", "-c", code], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "OK" in proc.stdout
