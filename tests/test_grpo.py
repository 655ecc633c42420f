"""GRPO on CoPE-VideoLM: verifiable rewards, T-GRPO, and the TRL 1.16 subclass that carries the video into the
policy loss (real TRL, real tiny model; no mocks). The regression tests at the end pin the private TRL API the
subclass overrides."""

import inspect
import math

import pytest
import torch
import trl
from trl import GRPOTrainer

from transformers_cope import CoPEVideoLMForConditionalGeneration
from transformers_cope.data import generate_motion_qa
from transformers_cope.tiny import build_tiny_processor, tiny_model_config
from transformers_cope.training.grpo import (
    CoPEGRPOConfig,
    CoPEGRPOTrainer,
    make_grpo_dataset,
    shuffle_video_steps,
)
from transformers_cope.training.rewards import (
    CombinedReward,
    accuracy_reward,
    format_reward,
    parse_interval,
    temporal_consistency_bonus,
    temporal_iou_reward,
)

MC = ["A. left", "B. right", "C. up", "D. down"]


# ------------------------------------------------------------------------------------------------------- rewards
def test_format_reward():
    good = "<think>The red square moves 12 px up.</think><answer>C</answer>"
    conversational = [{"role": "assistant", "content": good}]
    bad = ["<answer>C</answer>", "<think></think><answer>C</answer>", "<think>x</think><answer>C", "C",
           "<think>x</think><answer>C</answer> and more", "<think>x<answer>C</answer></think><answer>C</answer>"]
    assert format_reward(None, [good, conversational, " " + good + "\n"]) == [1.0, 1.0, 1.0]
    assert format_reward(None, bad) == [0.0] * len(bad)


def test_accuracy_reward():
    completions = ["<think>t</think><answer>C</answer>", "<think>t</think><answer>C. up</answer>",
                   "<think>t</think><answer>up</answer>", "<think>t</think><answer>B</answer>", "C"]
    assert accuracy_reward(None, completions, answer=["C"] * 5, options=[MC] * 5, answer_type=["mc"] * 5) == [
        1.0, 1.0, 1.0, 0.0, 0.0]
    open_form = ["<answer>Yes</answer>", "<answer>3 s</answer>", "<answer>2 to 5</answer>", "<answer>2 to 6</answer>"]
    assert accuracy_reward(None, open_form, answer=["yes", "3", "2 to 5", "2 to 5"], options=[None] * 4,
                           answer_type=["word", "seconds", "interval", "interval"]) == [1.0, 1.0, 1.0, 0.0]
    assert accuracy_reward(None, ["<answer>x</answer>"], answer=[None]) == [None]


def test_temporal_iou_reward():
    assert parse_interval("2 to 5") == (2.0, 5.0) and parse_interval("5-2 s") == (2.0, 5.0)
    assert parse_interval("left") is None
    rewards = temporal_iou_reward(
        None,
        ["<answer>3 to 5</answer>", "<answer>B</answer>", "<answer>A</answer>", "<answer>left</answer>",
         "no answer"],
        answer=["2 to 5", "B", "B", "A", "2 to 5"],
        answer_text=["2 to 5", "3 to 6", "3 to 6", "left", "2 to 5"],
        options=[None, ["A. 1 to 4", "B. 3 to 6"], ["A. 1 to 4", "B. 3 to 6"], MC, None],
        answer_type=["interval", "mc", "mc", "mc", "interval"],
        interval=[[2.0, 5.0], [3.0, 6.0], [3.0, 6.0], None, [2.0, 5.0]],
    )
    assert rewards[0] == pytest.approx(2 / 3) and rewards[1] == 1.0 and rewards[2] == pytest.approx(1 / 5)
    assert rewards[3] is None  # not a grounding question
    assert rewards[4] == 0.0


def test_combined_reward_is_a_renormalised_convex_mix():
    mix = CombinedReward({"format": 0.2, "accuracy": 0.6, "temporal_iou": 0.2})
    direction = dict(answer=["C"] * 3, options=[MC] * 3, answer_type=["mc"] * 3, answer_text=["up"] * 3,
                     interval=[None] * 3)
    rewards = mix(None, ["<think>t</think><answer>C</answer>", "<answer>C</answer>", "<think>t</think><answer>A"
                                                                                     "</answer>"], **direction)
    assert rewards == pytest.approx([1.0, 0.75, 0.25])  # tIoU does not apply: format 0.25, accuracy 0.75
    grounding = mix(None, ["<think>t</think><answer>3 to 5</answer>"], answer=["2 to 5"], answer_text=["2 to 5"],
                    options=[None], answer_type=["interval"], interval=[[2.0, 5.0]])
    assert grounding == pytest.approx([0.2 + 0.0 + 0.2 * 2 / 3])
    for bad in ({"format": 0.5, "accuracy": 0.6}, {"format": -0.1, "accuracy": 1.1}, {"speed": 1.0}):
        with pytest.raises(ValueError):
            CombinedReward(bad)


def test_temporal_consistency_bonus():
    correct = [True, False, True, True, True, False]
    groups = ["a", "a", "b", "b", "c", "c"]
    # ordered accuracy vs 0.8 x shuffled: a 0.5 >= 0.4 (bonus), b 1.0 >= 0.8 (bonus), c 0.5 < 0.8 (none)
    shuffled = {"a": 0.5, "b": 1.0, "c": 1.0}
    assert temporal_consistency_bonus(correct, groups, shuffled) == [0.3, 0.0, 0.3, 0.3, 0.0, 0.0]
    assert temporal_consistency_bonus([True], ["x"], {}, bonus=0.5) == [0.0]


def test_shuffle_video_steps():
    generator = torch.Generator().manual_seed(0)
    video = {"pixel_values_videos": torch.arange(2.0).view(2, 1, 1, 1).expand(2, 3, 2, 2),
             "delta_motion_vectors": torch.arange(6.0).view(6, 1, 1, 1).expand(6, 3, 2, 2),
             "delta_residuals": torch.arange(6.0).view(6, 1, 1, 1).expand(6, 3, 4, 4)}
    shuffled = shuffle_video_steps(video, generator)
    order = shuffled["delta_motion_vectors"][:, 0, 0, 0]
    assert sorted(order.tolist()) == list(range(6)) and order.tolist() != list(range(6))
    assert torch.equal(shuffled["delta_residuals"][:, 0, 0, 0], order)  # MV and residual rows move together
    assert shuffled["pixel_values_videos"][:, 0, 0, 0].tolist() == [1.0, 0.0]
    kept = shuffle_video_steps({**video, "video_compression_mask": torch.ones(8, dtype=torch.bool)}, generator)
    assert torch.equal(kept["pixel_values_videos"], video["pixel_values_videos"])  # masks pin keyframe rows


# ------------------------------------------------------------------------------------------------------- trainer
@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("grpo")
    records = generate_motion_qa(2, folder, tasks=("direction",), question_format="mc", progress=False)
    processor = build_tiny_processor()
    return records, processor, make_grpo_dataset(records)


def _trainer(setup, tmp_path, rewards=None, **config):
    _, processor, dataset = setup
    torch.manual_seed(0)
    model = CoPEVideoLMForConditionalGeneration(tiny_model_config())
    config = {"per_device_train_batch_size": 4, "num_generations": 2, "max_completion_length": 6, "max_steps": 1,
              "learning_rate": 1e-3, "report_to": "none", "save_strategy": "no", "use_cpu": True,
              "disable_tqdm": True, "logging_steps": 1, "seed": 0, "gradient_checkpointing": False, **config}
    args = CoPEGRPOConfig(str(tmp_path / "run"), **config)
    return CoPEGRPOTrainer(model, reward_funcs=rewards, args=args, train_dataset=dataset, processing_class=processor)


def test_dataset_and_prompt_encoding(setup, tmp_path):
    records, processor, dataset = setup
    assert {"prompt", "answer", "options", "interval", "answer_type"} <= set(dataset.column_names)
    trainer = _trainer(setup, tmp_path)
    ids, video = trainer.encode_prompt(dataset[0]["prompt"])  # Arrow-unified blocks (None keys) are cleaned
    reference = processor.apply_chat_template(
        [[{"role": "user", "content": [{"type": "video", "path": records[0]["video"]},
                                       {"type": "text", "text": dataset[0]["prompt"][0]["content"][1]["text"]}]}]],
        add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt")
    assert ids == reference["input_ids"][0].tolist()
    assert torch.equal(video["delta_residuals"], reference["delta_residuals"])
    trainer.encode_prompt(dataset[0]["prompt"])
    assert len(trainer._video_cache) == 1  # the repeated prompt's video was decoded once


def test_policy_loss_changes_when_the_video_changes(setup, tmp_path):
    """The GRPO loss and its gradient depend on the video: swapping the prompts' videos, or blanking the Δ steps,
    changes the loss, and the Δ-encoder and vision tower receive gradients from it."""
    _, _, dataset = setup
    trainer = _trainer(setup, tmp_path)
    model = trainer.model
    batch = trainer._generate_and_score_completions([dataset[0], dataset[0], dataset[1], dataset[1]])
    assert len(batch["video_inputs"]) == 4
    batch["advantages"] = torch.tensor([1.0, -1.0, 0.5, -0.5])
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
    mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
    with torch.no_grad():
        trainer._video_batch = batch["video_inputs"]
        old, _, _ = trainer._get_per_token_logps_and_entropies(model, ids, mask, batch["completion_ids"].size(1))
    batch["old_per_token_logps"] = old + 0.05  # an earlier policy: the clipped ratio is no longer exactly 1
    trainer.current_gradient_accumulation_steps = 1  # what Trainer's training loop sets

    model.zero_grad()
    loss = trainer._compute_loss(model, batch)
    loss.backward()
    delta_grad = sum(p.grad.abs().sum() for p in model.model.delta_encoder.parameters() if p.grad is not None)
    vision_grad = sum(p.grad.abs().sum() for p in model.model.vision_tower.parameters() if p.grad is not None)
    assert delta_grad > 0 and vision_grad > 0

    videos = batch["video_inputs"]
    swapped = {**batch, "video_inputs": [videos[2], videos[3], videos[0], videos[1]]}
    no_motion = {**batch, "video_inputs": [
        {**v, "delta_motion_vectors": torch.zeros_like(v["delta_motion_vectors"]),
         "delta_residuals": torch.zeros_like(v["delta_residuals"])} for v in videos]}
    with torch.no_grad():
        same = trainer._compute_loss(model, batch).item()
        other = trainer._compute_loss(model, swapped).item()
        blank = trainer._compute_loss(model, no_motion).item()
    assert math.isclose(same, loss.item(), rel_tol=1e-5)
    # a random tiny model: the Δ steps move the loss by ~5e-5 (swapping whole videos by ~7e-4); a loss computed
    # without them would not move at all. The bound is 10x the recomputation's own noise (~1e-7 absolute, measured
    # above), not a fraction of the measured effect, so other seeds or releases cannot make it flaky.
    noise = max(abs(same - loss.item()), 1e-7)
    assert abs(other - same) > 10 * noise and abs(blank - same) > 10 * noise, (same, other, blank, noise)


def test_each_row_is_scored_with_its_own_video(setup, tmp_path):
    """After TRL's shuffle, every row's log-probs are those of its own prompt and video, whatever the chunking (the
    Δ-encoder's BatchNorm is kept on running statistics, so other rows in a chunk cannot leak in)."""
    from trl.trainer.utils import shuffle_sequence_dict

    _, _, dataset = setup
    trainer = _trainer(setup, tmp_path)
    model = trainer.model
    assert model.training
    torch.manual_seed(1)
    batch = shuffle_sequence_dict(trainer._generate_and_score_completions([dataset[0], dataset[0], dataset[1],
                                                                          dataset[1]]))
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
    mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
    k = batch["completion_ids"].size(1)
    trainer._video_batch = batch["video_inputs"]
    with torch.no_grad():
        chunked, _, _ = trainer._get_per_token_logps_and_entropies(model, ids, mask, k, batch_size=3)
        single, _, _ = trainer._get_per_token_logps_and_entropies(model, ids, mask, k, batch_size=1)
    assert torch.allclose(chunked, single, atol=1e-5)
    prompts = [trainer.encode_prompt(dataset[i]["prompt"]) for i in range(2)]
    for row in range(4):
        prompt = batch["prompt_ids"][row][batch["prompt_mask"][row].bool()].tolist()
        completion = batch["completion_ids"][row][batch["completion_mask"][row].bool()]
        own = next(i for i, (p, _) in enumerate(prompts) if p == prompt)
        pid, video = prompts[own]
        assert all(torch.equal(video[key], batch["video_inputs"][row][key]) for key in video)
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([pid + completion.tolist()]), **video).logits[0, len(pid) - 1:-1]
        expected = torch.log_softmax(logits.float(), -1).gather(-1, completion[:, None])[:, 0]
        assert torch.allclose(expected, chunked[row, : len(completion)], atol=1e-2)


def test_grpo_trains_with_video_in_every_logprob_pass(setup, tmp_path):
    """One real TRL step with T-GRPO: each grad-enabled forward gets the video, the Δ-encoder learns, the temporal
    reward is logged."""

    def wants_angle_brackets(prompts, completions, **kwargs):  # varied rewards, so advantages are not all zero
        return [sum(ch in "<>" for ch in c[0]["content"]) / 6 for c in completions]

    trainer = _trainer(setup, tmp_path, rewards=[wants_angle_brackets], temporal_grpo=True,
                       temperature=1.5)
    model = trainer.model
    seen = []
    forward = model.model.forward

    def spy(*args, **kwargs):
        seen.append((torch.is_grad_enabled(), set(kwargs)))
        return forward(*args, **kwargs)

    model.model.forward = spy
    before = {k: v.clone() for k, v in model.model.delta_encoder.state_dict().items()}
    trainer.train()
    grad_calls = [keys for grad, keys in seen if grad]
    assert grad_calls and all({"pixel_values_videos", "delta_motion_vectors", "delta_residuals"} <= k
                              for k in grad_calls)
    assert any(not torch.equal(v, model.model.delta_encoder.state_dict()[k]) for k, v in before.items())
    logs = trainer.state.log_history[0]
    assert "rewards/temporal/mean" in logs and "temporal/shuffled_accuracy" in logs
    assert trainer.reward_func_names == ["wants_angle_brackets", "temporal"]


# ------------------------------------------------------------------------------------- TRL pin (regression)
def test_trl_private_api_pin():
    """CoPEGRPOTrainer overrides private TRL 1.16 methods; fail loudly when their shape changes."""
    assert trl.__version__.startswith("1.16."), f"CoPEGRPOTrainer was written against trl 1.16, found {trl.__version__}"

    def params(name):
        return list(inspect.signature(getattr(GRPOTrainer, name)).parameters)

    assert params("_tokenize_prompts") == ["self", "prompts"]
    assert params("_generate_and_score_completions") == ["self", "inputs"]
    assert params("_compute_loss") == ["self", "model", "inputs"]
    assert params("_generate_single_turn")[:5] == ["self", "prompt_ids", "images", "multimodal_fields",
                                                   "num_generations"]
    logps = params("_get_per_token_logps_and_entropies")
    assert logps[:8] == ["self", "model", "input_ids", "attention_mask", "logits_to_keep", "batch_size",
                         "compute_entropy", "compute_aux_loss"]
    # TRL's own log-prob pass still knows only image keywords: if video keywords appear, revisit the override
    assert not {"pixel_values_videos", "delta_motion_vectors", "video_inputs"} & set(logps)


def test_base_trl_logprob_pass_is_video_blind(setup, tmp_path):
    """Without the override TRL would score completions from input_ids alone: like upstream VLMs, the model reads
    placeholders without video tensors as plain tokens, so nothing would fail and training would be video-blind.
    CoPE's override feeds each prompt's video, and its scores differ from TRL's."""
    _, _, dataset = setup
    trainer = _trainer(setup, tmp_path)
    ids, video = trainer.encode_prompt(dataset[0]["prompt"])
    ids = torch.tensor([ids])
    with torch.no_grad():
        blind = GRPOTrainer._get_per_token_logps_and_entropies(trainer, trainer.model, ids, torch.ones_like(ids), 4)[0]
        text_only = trainer.model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[:, -5:-1]
        trainer._video_batch = [video]
        seeing = trainer._get_per_token_logps_and_entropies(trainer.model, ids, torch.ones_like(ids), 4)[0]
    expected = torch.log_softmax(text_only.float(), -1).gather(-1, ids[:, -4:, None]).squeeze(-1)
    torch.testing.assert_close(blind, expected, rtol=1e-4, atol=1e-4)  # TRL's pass = the model without the video
    assert not torch.allclose(blind, seeing, atol=1e-4)  # the override's pass sees it


# ------------------------------------------------------------------------------ refusing video-less training
def test_string_prompts_with_a_video_column_are_refused(setup, tmp_path):
    """TRL injects `image` columns into prompts but not `video`: a plain-string prompt next to a `video` column
    would train on text-only forwards, silently. The trainer refuses it at construction and per batch."""
    from datasets import Dataset

    records, processor, dataset = setup
    text_rows = Dataset.from_list([{"prompt": r["question"], "video": r["video"], "answer": r["answer"]}
                                   for r in records])
    with pytest.raises(ValueError, match=r"'video' column.*text-only"):
        CoPEGRPOTrainer(CoPEVideoLMForConditionalGeneration(tiny_model_config()), args=CoPEGRPOConfig(
            str(tmp_path / "run"), report_to="none", use_cpu=True, allow_text_only=True),
            train_dataset=text_rows, processing_class=processor)
    chat_rows = Dataset.from_list([{"prompt": [{"role": "user", "content": [{"type": "text", "text": r["question"]}]}],
                                    "videos": [r["video"]]} for r in records])
    with pytest.raises(ValueError, match=r"train_dataset row 0: .*chat without a video block.*'videos' column"):
        _trainer((records, processor, chat_rows), tmp_path)
    trainer = _trainer(setup, tmp_path)  # a valid trainer; then an invalid batch (as an iterable dataset yields)
    with pytest.raises(ValueError, match="a GRPO batch.*'video' column"):
        trainer._generate_and_score_completions([{"prompt": records[0]["question"], "video": records[0]["video"]}])


def test_prompts_without_video_need_an_explicit_opt_in(setup, tmp_path):
    from datasets import Dataset

    records, processor, _ = setup
    rows = Dataset.from_list([{"prompt": [{"role": "user", "content": r["question"]}], "answer": r["answer"]}
                              for r in records])
    with pytest.raises(ValueError, match="allow_text_only=True"):
        _trainer((records, processor, rows), tmp_path)
    trainer = _trainer((records, processor, rows), tmp_path, allow_text_only=True)
    ids, video = trainer.encode_prompt(rows[0]["prompt"])
    assert ids and video == {}


def test_paths_that_bypass_the_video_are_refused(setup, tmp_path):
    _, processor, dataset = setup
    model = CoPEVideoLMForConditionalGeneration(tiny_model_config())
    args = CoPEGRPOConfig(str(tmp_path / "run"), report_to="none", use_cpu=True)
    with pytest.raises(ValueError, match="rollout_func"):
        CoPEGRPOTrainer(model, args=args, train_dataset=dataset, processing_class=processor,
                        rollout_func=lambda prompts, trainer: {})
    args.use_vllm = True  # set after construction: GRPOConfig would check that vLLM is installed
    with pytest.raises(ValueError, match="use_vllm"):
        CoPEGRPOTrainer(model, args=args, train_dataset=dataset, processing_class=processor)


def test_gradient_forward_without_video_raises(setup, tmp_path):
    """The last guard: whatever path led there, a gradient-enabled log-prob pass over rows without video tensors
    raises (a no-grad pass, e.g. text-only evaluation, is allowed)."""
    _, _, dataset = setup
    trainer = _trainer(setup, tmp_path)
    ids = torch.tensor([trainer.processing_class.tokenizer("hello there").input_ids])
    trainer._video_batch = [{}]
    with pytest.raises(RuntimeError, match="without video tensors for rows \\[0\\]"):
        trainer._get_per_token_logps_and_entropies(trainer.model, ids, torch.ones_like(ids), 1)
    with torch.no_grad():
        logps, _, _ = trainer._get_per_token_logps_and_entropies(trainer.model, ids, torch.ones_like(ids), 1)
    assert logps.shape == (1, 1)


def test_evaluate_policy_reports_each_part_with_intervals(setup):
    """The held-out report keeps format, answering and accuracy apart (a format-only gain must not read as accuracy)."""
    from transformers_cope.training.policy_eval import evaluate_policy, mean_ci95

    records, processor, _ = setup
    torch.manual_seed(0)
    model = CoPEVideoLMForConditionalGeneration(tiny_model_config())
    out = evaluate_policy(model, processor, records, num_samples=2, max_new_tokens=6, progress=False,
                          per_prompt=True)
    for key in ("reward", "format", "accuracy", "answered", "greedy_accuracy"):
        assert 0.0 <= out[key] <= 1.0 and out[key + "_ci95"] >= 0.0 and len(out["per_prompt"][key]) == 2
    assert out["accuracy"] <= out["answered"]  # a right answer is an answer
    assert mean_ci95([1.0, 0.0, 1.0, 0.0]) == pytest.approx((0.5, 1.96 * (1 / 3) ** 0.5 / 2))
