"""CoPEVideoLMProcessor: chat template, per-step placeholder expansion, batching, save/load, threads."""

import json
import os
import subprocess
import sys
import textwrap
import threading

import pytest
import torch
from transformers import AutoProcessor, Qwen2Tokenizer

import transformers_cope  # noqa: F401  (registers the Auto classes)
from transformers_cope.data.render import make_textured_video
from transformers_cope.processing_cope import (
    CHAT_TEMPLATE,
    COPE_SPECIAL_TOKENS,
    CoPEVideoLMProcessor,
    add_cope_special_tokens,
)
from transformers_cope.tiny import build_tiny_processor, build_tiny_tokenizer

TOKENS, ROWS, DELTA = 16, 4, 8  # tiny keyframe: 4x4 pooled tokens in 4 rows; 8 Δ-tokens per P step


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Two short synthetic clips of different lengths (3 s and 2 s at 30 fps, 64x64)."""
    root = tmp_path_factory.mktemp("videos")
    return (
        str(make_textured_video(root / "a.mp4", num_frames=90, pan=(1.0, 0.0), sprite_velocity=(0.0, 1.0), seed=1)),
        str(make_textured_video(root / "b.mp4", num_frames=60, pan=(0.0, -1.0), seed=2)),
    )


def conversation(video, question="Which direction does the camera pan?"):
    return [{"role": "user", "content": [{"type": "video", "path": video}, {"type": "text", "text": question}]}]


def count(ids, processor, token):
    ids = ids.tolist() if hasattr(ids, "tolist") else ids
    return ids.count(processor.tokenizer.convert_tokens_to_ids(token))


def assert_same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        if torch.is_tensor(a[key]):
            assert torch.equal(a[key], b[key]), key
        else:
            assert a[key] == b[key], key


@pytest.mark.parametrize("k,timestamps", [(1, False), (2, True), (8, False)])
def test_chat_template_expands_per_step(videos, k, timestamps):
    processor = build_tiny_processor(fps=4.0, keyframes_per_gop=k, use_timestamps=timestamps)
    out = processor.apply_chat_template(conversation(videos[0]), add_generation_prompt=True, tokenize=True,
                                        return_dict=True, return_tensors="pt")
    types = out["video_frame_types"][0]
    n_i, n_p = types.count("I"), types.count("P")
    assert (n_i, n_p) == {1: (2, 10), 2: (3, 9), 8: (12, 0)}[k]  # 12 steps at 4 fps
    ids = out["input_ids"][0]
    assert count(ids, processor, "<|video_pad|>") == n_i * TOKENS
    assert count(ids, processor, "<|frame_newline|>") == n_i * ROWS
    assert count(ids, processor, "<|delta_pad|>") == n_p * DELTA
    assert count(ids, processor, "<|delta_end|>") == n_p
    assert count(ids, processor, "<|vision_start|>") == count(ids, processor, "<|vision_end|>") == 1
    assert out["pixel_values_videos"].shape[0] == n_i and out["delta_motion_vectors"].shape[0] == n_p
    text = processor.decode(ids)
    stamps = [f"Time {t:.1f}s:" for t in out["video_timestamps"][0]]
    assert all(stamp in text for stamp in stamps) == timestamps
    assert text.count("Time ") == (len(types) if timestamps else 0)
    assert text.endswith("Which direction does the camera pan?<|im_end|>\n<|im_start|>assistant\n")
    # step order: the placeholder run follows the layout string
    run = [t for t in ids.tolist() if t in (processor.video_token_id, processor.delta_end_token_id)]
    kinds = "".join("I" if t == processor.video_token_id else "P" for t in run).replace("I" * TOKENS, "I")
    assert kinds == types


def test_paper_sized_accounting():
    """Paper: 196 tokens + 14 newlines = 210 per keyframe; 8 + 1 = 9 per Δ step."""
    processor = build_tiny_processor(size={"height": 384, "width": 384}, patch_size=14)
    grid = processor.video_processor.keyframe_token_grid()
    fake = {"video_frame_types": ["IPPPPPPP"], "video_timestamps": [[float(i) for i in range(8)]]}
    text = processor.replace_video_token(fake, 0, size={"height": 384, "width": 384}, patch_size=14)
    ids = processor.tokenizer(text)["input_ids"]
    assert grid == 14 and len(ids) == 210 + 7 * 9


def test_call_matches_chat_template(videos):
    processor = build_tiny_processor(fps=4.0)
    via_template = processor.apply_chat_template(conversation(videos[0]), add_generation_prompt=True, tokenize=True,
                                                 return_dict=True, return_tensors="pt")
    prompt = processor.apply_chat_template(conversation(videos[0]), add_generation_prompt=True)
    assert prompt.count("<|video_pad|>") == 1
    direct = processor(text=prompt, videos=videos[0], return_tensors="pt")
    assert_same(direct, via_template)


def test_batch_left_padding_and_decoding(videos):
    processor = build_tiny_processor(fps=4.0, keyframes_per_gop=2)
    batch = [conversation(videos[0]), conversation(videos[1], "Does the camera move? Answer yes or no.")]
    out = processor.apply_chat_template(batch, add_generation_prompt=True, tokenize=True, return_dict=True,
                                        return_tensors="pt", processor_kwargs={"padding": True})
    singles = [processor.apply_chat_template(c, add_generation_prompt=True, tokenize=True, return_dict=True,
                                             return_tensors="pt") for c in batch]
    lengths = [s["input_ids"].shape[1] for s in singles]
    assert out["input_ids"].shape == (2, max(lengths))
    for row, single, length in zip(range(2), singles, lengths):
        pad = max(lengths) - length
        assert out["attention_mask"][row, :pad].sum() == 0 and out["attention_mask"][row, pad:].all()  # left padding
        assert torch.equal(out["input_ids"][row, pad:], single["input_ids"][0])
    assert out["video_frame_types"] == singles[0]["video_frame_types"] + singles[1]["video_frame_types"]
    for key in ("pixel_values_videos", "delta_motion_vectors", "delta_residuals"):
        assert torch.equal(out[key], torch.cat([s[key] for s in singles]))
    n_i = sum(t.count("I") for t in out["video_frame_types"])
    assert (out["input_ids"] == processor.video_token_id).sum() == n_i * TOKENS == out["pixel_values_videos"].shape[0] * TOKENS

    # post-processing: special tokens dropped, one string per sequence, 1-D input accepted
    answer = processor.tokenizer("left<|im_end|>", add_special_tokens=False)["input_ids"]
    generated = torch.cat([out["input_ids"], torch.tensor([answer, answer])], dim=1)
    texts = processor.post_process_image_text_to_text(generated[:, out["input_ids"].shape[1]:])
    assert texts == ["left", "left"]
    assert processor.post_process_image_text_to_text(torch.tensor(answer)) == ["left"]
    assert processor.batch_decode(generated[:, -len(answer):], skip_special_tokens=True) == ["left", "left"]
    decoded = processor.post_process_image_text_to_text(generated)
    assert all("video_pad" not in text and text.endswith("assistant\nleft") for text in decoded)


def test_token_compression_mask_matches_placeholders(videos):
    processor = build_tiny_processor(fps=4.0, keyframes_per_gop=4, use_token_compression=True)
    batch = [conversation(videos[0]), conversation(videos[1])]
    out = processor.apply_chat_template(batch, add_generation_prompt=True, tokenize=True, return_dict=True,
                                        return_tensors="pt", processor_kwargs={"padding": True})
    mask = out["video_compression_mask"]
    n_i = out["pixel_values_videos"].shape[0]
    assert mask.dtype == torch.bool and mask.shape == (n_i * TOKENS,)
    assert int(mask.sum()) == int((out["input_ids"] == processor.video_token_id).sum())
    per_frame = mask.view(n_i, TOKENS)
    assert per_frame.any(dim=1).all()
    # rows keep their newline even when all their tokens are pruned
    assert int((out["input_ids"] == processor.frame_newline_token_id).sum()) == n_i * ROWS


def test_save_load_round_trip(videos, tmp_path):
    processor = build_tiny_processor(fps=4.0, keyframes_per_gop=2, use_timestamps=True, max_steps=None,
                                     use_token_compression=True)
    processor.save_pretrained(tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert {"processor_config.json", "chat_template.jinja", "tokenizer.json", "tokenizer_config.json"} <= set(names)
    assert "video_preprocessor_config.json" not in names  # v5: one nested processor_config.json
    for loaded in (AutoProcessor.from_pretrained(tmp_path), CoPEVideoLMProcessor.from_pretrained(tmp_path)):
        assert type(loaded).__name__ == "CoPEVideoLMProcessor"
        assert loaded.use_timestamps and loaded.video_processor.max_steps is None
        assert loaded.tokenizer.padding_side == "left" and loaded.chat_template == CHAT_TEMPLATE
        kwargs = dict(add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt")
        assert_same(loaded.apply_chat_template(conversation(videos[0]), **kwargs),
                    processor.apply_chat_template(conversation(videos[0]), **kwargs))
    overridden = CoPEVideoLMProcessor.from_pretrained(tmp_path, keyframes_per_gop=4)
    assert overridden.video_processor.keyframes_per_gop == 4


def test_threads_match_sequential(videos):
    processor = build_tiny_processor(fps=4.0, use_timestamps=True, use_token_compression=True)
    jobs = [conversation(videos[i % 2], f"question {i}") for i in range(4)]
    kwargs = dict(add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt")
    sequential = [processor.apply_chat_template(job, **kwargs) for job in jobs]
    results, errors = [None] * 4, []

    def work(i):
        try:
            results[i] = processor.apply_chat_template(jobs[i], **kwargs)
        except Exception as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for got, want in zip(results, sequential):
        assert_same(got, want)


def test_model_input_names_and_token_ids():
    processor = build_tiny_processor()
    names = processor.model_input_names
    for key in ("input_ids", "attention_mask", "pixel_values_videos", "delta_motion_vectors", "delta_residuals",
                "video_compression_mask", "video_frame_types", "video_timestamps"):
        assert key in names
    vocab = processor.tokenizer.get_vocab()
    assert processor.video_token == "<|video_pad|>" and processor.video_token_id == vocab["<|video_pad|>"]
    assert processor.delta_token == "<|delta_pad|>" and processor.delta_token_id == vocab["<|delta_pad|>"]
    assert processor.video_token_ids == [processor.video_token_id, processor.delta_token_id]


def test_mm_token_type_ids_and_assistant_mask(videos):
    processor = build_tiny_processor(fps=4.0)
    chat = conversation(videos[1]) + [{"role": "assistant", "content": [{"type": "text", "text": "up"}]}]
    out = processor.apply_chat_template(chat, tokenize=True, return_dict=True, return_tensors="pt",
                                        return_assistant_tokens_mask=True,
                                        processor_kwargs={"return_mm_token_type_ids": True})
    ids, types = out["input_ids"][0], out["mm_token_type_ids"][0]
    is_video = (ids == processor.video_token_id) | (ids == processor.delta_token_id)
    assert torch.equal(types == 2, is_video)
    assistant = ids[out["assistant_masks"][0].bool()]
    assert processor.decode(assistant) == "up<|im_end|>\n"
    # the id-based mask (for collators, and transformers 5.17) marks the same tokens, also in a padded batch
    assert processor.assistant_tokens_mask(out["input_ids"]) == out["assistant_masks"].tolist()
    two_turns = chat + [{"role": "user", "content": "And now?"}, {"role": "assistant", "content": "down"}]
    batch = processor.apply_chat_template([chat, two_turns], tokenize=True, return_dict=True, return_tensors="pt",
                                          return_assistant_tokens_mask=True, processor_kwargs={"padding": True})
    masks = batch["assistant_masks"]
    assert processor.assistant_tokens_mask(batch["input_ids"]) == masks.tolist()
    assert processor.decode(batch["input_ids"][1][masks[1].bool()]) == "up<|im_end|>\ndown<|im_end|>\n"


def test_tokenizer_is_deterministic_and_has_special_tokens():
    a, b = build_tiny_tokenizer(), build_tiny_tokenizer()
    assert a.get_vocab() == b.get_vocab() and a._tokenizer.to_str() == b._tokenizer.to_str()
    assert a.chat_template == CHAT_TEMPLATE and a.padding_side == "left"
    assert a.pad_token == a.eos_token == "<|endoftext|>"
    for token in COPE_SPECIAL_TOKENS:
        assert len(a(token, add_special_tokens=False)["input_ids"]) == 1
    assert len(a.tokenize("Which direction does the object move?")) <= 8  # the QA vocabulary is in the merges
    assert len(a) < 1024


def test_add_cope_special_tokens_keeps_existing_ids():
    """A Qwen2-like tokenizer that already has some of the tokens (as the real Qwen2 one does)."""
    base = build_tiny_tokenizer()
    vocab = {token: i for token, i in base.get_vocab().items() if token not in COPE_SPECIAL_TOKENS}
    vocab["<|endoftext|>"] = len(vocab)
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m)
              for m in json.loads(base.backend_tokenizer.to_str())["model"]["merges"]]
    qwen_like = Qwen2Tokenizer(vocab=vocab, merges=merges)
    qwen_like.add_special_tokens({"extra_special_tokens": ["<|im_start|>", "<|im_end|>", "<|video_pad|>"]})
    before = {t: qwen_like.convert_tokens_to_ids(t) for t in ("<|im_start|>", "<|im_end|>", "<|video_pad|>")}
    ids = add_cope_special_tokens(qwen_like)
    assert set(ids) == set(COPE_SPECIAL_TOKENS) and len(set(ids.values())) == len(ids)
    assert all(ids[t] == before[t] for t in before)
    assert len(qwen_like) == len(vocab) + len(COPE_SPECIAL_TOKENS) - 1  # <|endoftext|> was already there
    assert add_cope_special_tokens(qwen_like) == ids  # idempotent
    assert qwen_like.chat_template == CHAT_TEMPLATE
    CoPEVideoLMProcessor(video_processor=build_tiny_processor().video_processor, tokenizer=qwen_like)


def test_errors(videos):
    processor = build_tiny_processor(fps=4.0)
    with pytest.raises(ValueError, match="placeholders"):
        processor(text="no video here", videos=videos[0])
    with pytest.raises(ValueError, match="placeholders"):
        processor(text="<|video_pad|><|video_pad|>", videos=videos[0])
    with pytest.raises(ValueError, match="count"):
        processor(text="<|vision_start|><|video_pad|><|vision_end|>", videos=videos[0], truncation=True, max_length=20)
    bare = Qwen2Tokenizer(vocab={"<|endoftext|>": 0, "a": 1}, merges=[])
    with pytest.raises(ValueError, match="add_cope_special_tokens"):
        CoPEVideoLMProcessor(video_processor=processor.video_processor, tokenizer=bare)
    image_chat = [{"role": "user", "content": [{"type": "image", "path": "x.png"}]}]
    with pytest.raises(Exception, match="videos, not images"):
        processor.apply_chat_template(image_chat)


@pytest.mark.parametrize("newlines,delta_end", [(True, True), (False, False)])
def test_token_count_matches_model_config(videos, newlines, delta_end):
    """The text the processor writes costs exactly what `count_video_tokens` says for the tiny model config."""
    from transformers_cope.configuration_cope import count_video_tokens
    from transformers_cope.tiny import tiny_model_config

    config = tiny_model_config(use_row_newlines=newlines, use_delta_end=delta_end)
    processor = build_tiny_processor(fps=4.0, keyframes_per_gop=2, use_row_newlines=newlines, use_delta_end=delta_end)
    out = processor(text="<|vision_start|><|video_pad|><|vision_end|>", videos=videos[0])
    ids = out["input_ids"][0]
    expected = count_video_tokens(out["video_frame_types"][0], config)
    assert len(ids) - 2 == expected["total_tokens"]
    assert ids.count(processor.video_token_id) == expected["video_pad_tokens"]
    assert ids.count(processor.delta_token_id) == expected["delta_pad_tokens"]
    assert config.tokens_per_keyframe == processor.video_processor.tokens_per_keyframe() == TOKENS
    assert config.text_config.vocab_size == len(processor.tokenizer)
    for name in ("video_token_id", "delta_token_id", "frame_newline_token_id", "delta_end_token_id"):
        assert getattr(config, name) == getattr(processor, name), name
    assert config.mv_clip == processor.video_processor.mv_clip
    assert config.mv_normalizer == processor.video_processor.mv_normalizer


def test_tiny_model_runs_on_processor_output(videos):
    """End to end: tiny processor output (batched, left padded) feeds the tiny model's forward and generate."""
    from transformers_cope.modeling_cope import CoPEVideoLMForConditionalGeneration
    from transformers_cope.tiny import tiny_model_config

    torch.manual_seed(0)
    model = CoPEVideoLMForConditionalGeneration(tiny_model_config()).eval()
    processor = build_tiny_processor(fps=4.0, keyframes_per_gop=2, use_timestamps=True, use_token_compression=True)
    batch = [conversation(videos[0]), conversation(videos[1])]
    inputs = processor.apply_chat_template(batch, add_generation_prompt=True, tokenize=True, return_dict=True,
                                           return_tensors="pt", processor_kwargs={"padding": True})
    with torch.no_grad():
        logits = model(**inputs).logits
    assert logits.shape == (*inputs["input_ids"].shape, len(processor.tokenizer))
    generated = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    texts = processor.post_process_image_text_to_text(generated[:, inputs["input_ids"].shape[1]:])
    assert len(texts) == 2 and all(isinstance(text, str) for text in texts)


def test_remote_code_round_trip(videos, tmp_path, monkeypatch):
    """Saved with auto classes, the processor loads as Hub remote code where transformers_cope is not importable."""
    from transformers_cope.video_processing_cope import CoPEVideoProcessor

    monkeypatch.setattr(CoPEVideoLMProcessor, "_auto_class", "AutoProcessor")
    monkeypatch.setattr(CoPEVideoProcessor, "_auto_class", "AutoVideoProcessor")
    processor = build_tiny_processor(fps=4.0, keyframes_per_gop=2)
    processor.save_pretrained(tmp_path / "repo")
    files = set(os.listdir(tmp_path / "repo"))
    assert {"processing_cope.py", "video_processing_cope.py", "codec.py"} <= files
    kwargs = dict(add_generation_prompt=True, tokenize=True, return_dict=True)
    expected = processor.apply_chat_template(conversation(videos[0]), **kwargs)["input_ids"]
    script = textwrap.dedent(f"""
        import json, sys
        sys.modules["transformers_cope"] = None  # only the saved files may be used
        from transformers import AutoProcessor
        processor = AutoProcessor.from_pretrained({str(tmp_path / "repo")!r}, trust_remote_code=True)
        assert type(processor).__module__.startswith("transformers_modules"), type(processor).__module__
        chat = [{{"role": "user", "content": [{{"type": "video", "path": {videos[0]!r}}},
                                             {{"type": "text", "text": "Which direction does the camera pan?"}}]}}]
        out = processor.apply_chat_template(chat, add_generation_prompt=True, tokenize=True, return_dict=True)
        print(json.dumps(out["input_ids"]))
    """)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == expected
