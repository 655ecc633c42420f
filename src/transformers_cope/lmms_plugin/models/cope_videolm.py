"""lmms-eval model adapter for CoPE-VideoLM: answers `generate_until` requests with the package's own decoding.

Why it reuses `training.evaluation.greedy_answers`: the project's harness (`evaluate_video_qa`) and lmms-eval must
give the same answers for the same records, so both go through one batching and decoding path (the collator's
encoding, greedy `generate`, stop at `<|im_end|>`). lmms-eval supplies the prompt text (the task's `doc_to_text`)
and the video path (`doc_to_visual`); sampling options in a task's `generation_kwargs` are honoured only as
`max_new_tokens` (the harness is greedy).
"""

from __future__ import annotations

from lmms_eval.api.instance import Instance
from lmms_eval.api.model import lmms
from tqdm.auto import tqdm


class CoPEVideoLMEval(lmms):
    """`--model cope_videolm --model_args pretrained=PATH[,batch_size=N,device=cpu,max_new_tokens=K]`."""

    def __init__(self, pretrained: str | None = None, device: str | None = None, batch_size: int | str = 16,
                 max_new_tokens: int | str = 8, **kwargs) -> None:
        super().__init__()
        if kwargs:
            raise TypeError(f"cope_videolm got unexpected model_args {sorted(kwargs)}; it takes pretrained, device, "
                            "batch_size, max_new_tokens")
        import torch

        from transformers_cope.embedded import default_model_path
        from transformers_cope.training.evaluation import load_model_and_processor

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        path = str(pretrained) if pretrained else str(default_model_path())
        self._model, self._processor = load_model_and_processor(path, device=device)
        self._model.eval()
        self.batch_size_per_gpu = int(batch_size)
        self._max_new_tokens = int(max_new_tokens)
        self._device = torch.device(device)

    @property
    def batch_size(self) -> int:
        return self.batch_size_per_gpu

    def generate_until(self, requests: list[Instance]) -> list[str]:
        from transformers_cope.training.evaluation import greedy_answers

        answers: list[str] = []
        bar = tqdm(total=len(requests), desc="cope_videolm", disable=self.rank != 0)
        for start in range(0, len(requests), self.batch_size):
            chunk = [request.args for request in requests[start:start + self.batch_size]]
            conversations, limit = [], self._max_new_tokens
            for context, gen_kwargs, doc_to_visual, doc_id, task, split in chunk:
                visuals = doc_to_visual(self.task_dict[task][split][doc_id])
                if len(visuals) != 1:
                    raise ValueError(f"cope_videolm answers about one video per question; {task} doc {doc_id} gave "
                                     f"{len(visuals)} visuals")
                conversations.append([{"role": "user", "content": [{"type": "video", "path": str(visuals[0])},
                                                                   {"type": "text", "text": context}]}])
                limit = int((gen_kwargs or {}).get("max_new_tokens", limit))
            texts = greedy_answers(self._model, self._processor, conversations, max_new_tokens=limit)
            answers.extend(text.strip() for text in texts)
            bar.update(len(chunk))
        bar.close()
        return answers

    def loglikelihood(self, requests):
        raise NotImplementedError("cope_videolm answers generate_until tasks only")

    def generate_until_multi_round(self, requests):
        raise NotImplementedError("cope_videolm answers single-turn questions only")
