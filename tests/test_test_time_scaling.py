"""Test-time scaling: answer extraction, voting, batched chains that keep each copy's video, self-consistency and
best-of-N on a tiny CoPE model (real generate, no mocks)."""

import pytest
import torch

from transformers_cope import CoPEVideoLMForConditionalGeneration
from transformers_cope.data import generate_motion_qa, to_messages
from transformers_cope.test_time_scaling import (
    best_of_n,
    extract_answer,
    majority_vote,
    normalize_answer,
    repeat_inputs,
    sample_chains,
    self_consistency,
)
from transformers_cope.tiny import build_tiny_processor, tiny_model_config


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    records = generate_motion_qa(2, tmp_path_factory.mktemp("tts"), tasks=("direction", "grounding"),
                                 question_format="mc", progress=False)
    processor = build_tiny_processor()
    torch.manual_seed(0)
    model = CoPEVideoLMForConditionalGeneration(tiny_model_config()).eval()
    return model, processor, records


def test_extract_answer():
    assert extract_answer("<think>it moves up</think><answer> C </answer>") == "C"
    assert extract_answer("<answer>A</answer> then <answer>B</answer>") == "B"  # the last one counts
    assert extract_answer([{"role": "assistant", "content": "<think>x</think><answer>left</answer>"}]) == "left"
    assert extract_answer("<think>x</think><answer>B") is None  # truncated: no answer
    assert extract_answer("just left") is None
    assert extract_answer("<think>x</think> left", fallback=True) == "left"
    assert extract_answer("<think>x</think><answer>B", fallback=True) is None


def test_normalize_and_vote():
    options = ["A. left", "B. right", "C. up", "D. down"]
    assert {normalize_answer(a, options) for a in ("B", "b.", "(B)", "B. right", "right", " Right ")} == {"B"}
    assert normalize_answer("Left.") == "left"
    winner, votes = majority_vote(["B", "right", "A", None, "C"], options=options)
    assert winner == "B" and votes == {"B": 2, "A": 1, "C": 1}
    # a tie goes to the answer whose chains are more confident in total
    winner, _ = majority_vote(["up", "down"], confidences=[-2.0, -0.5])
    assert winner == "down"
    assert majority_vote([None, None]) == (None, {})


def test_repeat_inputs_is_video_major(setup):
    _, processor, records = setup
    inputs = processor.apply_chat_template([to_messages(records[0], include_answer=False)], add_generation_prompt=True,
                                           tokenize=True, return_dict=True, return_tensors="pt")
    batch = repeat_inputs(inputs, 3)
    deltas = inputs["delta_motion_vectors"]
    assert batch["input_ids"].shape[0] == 3
    assert torch.equal(batch["delta_motion_vectors"], torch.cat([deltas] * 3))  # copy after copy, not interleaved
    assert batch["video_frame_types"] == inputs["video_frame_types"] * 3


def test_batched_greedy_chains_match_single_generation(setup):
    """Each copy in the batch of chains sees its own, correctly ordered video: greedy copies equal one generation."""
    model, processor, records = setup
    messages = to_messages(records[0], reasoning=True, include_answer=False)
    single, _ = sample_chains(model, processor, messages=messages, n=1, do_sample=False, max_new_tokens=8)
    batched, confidences = sample_chains(model, processor, messages=messages, n=3, do_sample=False, max_new_tokens=8)
    assert batched == single * 3
    assert len(confidences) == 3 and all(c <= 0 for c in confidences)


def test_self_consistency(setup):
    model, processor, records = setup
    record = records[0]
    torch.manual_seed(0)
    out = self_consistency(model, processor, messages=to_messages(record, reasoning=True, include_answer=False), k=5,
                           max_new_tokens=8, options=record["options"], answer_fallback=True)
    assert len(out["chains"]) == len(out["answers"]) == 5
    assert sum(out["votes"].values()) <= 5
    if out["answer"] is not None:
        assert normalize_answer(out["answer"], record["options"]) == next(iter(out["votes"]))
        assert out["agreement"] == out["votes"][next(iter(out["votes"]))] / 5
    # processor output works too, and early stopping ends once the leader cannot be caught
    inputs = processor.apply_chat_template([to_messages(record, include_answer=False)], add_generation_prompt=True,
                                           tokenize=True, return_dict=True, return_tensors="pt")
    early = self_consistency(model, processor, inputs, k=5, do_sample=False, max_new_tokens=6, answer_fallback=True,
                             early_stop=True)
    assert len(early["chains"]) == 3 and early["agreement"] == 1.0
    with pytest.raises(ValueError, match="one prompt"):
        self_consistency(model, processor, repeat_inputs(inputs, 2), k=2)


def test_best_of_n_picks_the_highest_reward(setup):
    model, processor, records = setup
    messages = to_messages(records[1], reasoning=True, include_answer=False)
    seen = {}

    def reward(prompts, completions, answer, **kwargs):
        seen["answer"] = answer
        return [float(len(c)) for c in completions]

    torch.manual_seed(0)
    out = best_of_n(model, processor, messages=messages, n=4, reward_fn=reward, reward_kwargs={"answer": "A"},
                    max_new_tokens=8)
    assert out["index"] == max(range(4), key=lambda i: (out["scores"][i], -i))
    assert out["best"] == out["chains"][out["index"]] and seen["answer"] == ["A"] * 4
    # without a verifier: the model's own confidence
    default = best_of_n(model, processor, messages=messages, n=3, max_new_tokens=6)
    assert default["scores"][default["index"]] == max(default["scores"])
