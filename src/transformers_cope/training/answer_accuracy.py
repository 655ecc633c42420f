"""`evaluate` metric module: accuracy of short answers (exact match after light normalisation).

Why a local module: `evaluate.load("accuracy")` fetches its script from the Hub, which offline machines cannot do.
This file is an ordinary `evaluate` metric script shipped with the package and loaded with
`evaluate.load(<path of this file>)` (see `evaluation.load_answer_accuracy`). Its result has the Hub metric's key
(`accuracy`), computed over strings instead of class ids, so answers need no label vocabulary.
Normalisation: an `<answer>...</answer>` span is used when present; case, surrounding whitespace and trailing
punctuation are ignored; a multiple-choice reply "B. right" or "B)" counts as "B" when the reference is a letter.
"""

import re

import datasets
import evaluate

_DESCRIPTION = "Exact-match accuracy of short (word, number or option letter) answers after normalisation."
_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): generated answers.
    references (`list` of `str`): ground-truth answers.
Returns:
    accuracy (`float`): fraction of predictions equal to their reference after normalisation, in [0, 1].
Examples:
    >>> metric = evaluate.load("path/to/answer_accuracy.py")
    >>> metric.compute(predictions=["Left.", "<answer>B</answer>"], references=["left", "B"])
    {'accuracy': 1.0}
"""
_CITATION = ""

_ANSWER_SPAN = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.S)
_LETTER = re.compile(r"^([a-z])(?:[\.\):]|\s|$)")


def normalize_answer(text: str, reference: str | None = None) -> str:
    """Lower-cased answer text without tags, surrounding space or trailing punctuation."""
    text = str(text)
    match = _ANSWER_SPAN.search(text)
    if match:
        text = match.group(1)
    text = " ".join(text.strip().lower().split())
    text = text.strip(" .,;:!?\"'`")
    if reference is not None:
        ref = normalize_answer(reference)
        if len(ref) == 1 and ref.isalpha():
            letter = _LETTER.match(text)
            if letter:
                return letter.group(1)
    return text


class AnswerAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references):
        if not references:
            return {"accuracy": 0.0}
        hits = [normalize_answer(p, r) == normalize_answer(r) for p, r in zip(predictions, references)]
        return {"accuracy": float(sum(hits) / len(hits))}
