"""Controls for Δ-encoder alignment: what the held-out MSE would be without the Δ-encoder's information.

Why: the auxiliary transformers of `CoPEDeltaAligner` see the reference frame's tokens as well as the Δ tokens, so a
lower MSE than "copy the reference" can come from the reference alone (for example by shrinking tokens towards their
mean, which lowers any MSE). An alignment result means something only next to:

- `ablate_delta(dataset, "zero")`: the same training with every Δ input zeroed (no motion, no residual);
- `ablate_delta(dataset, "shuffle")`: each step paired with another step's Δ inputs (real Δ statistics, wrong step);
- `mean_shrink_baseline`: the best affine shrink of the reference tokens towards the training mean,
  `mu + a * (reference - mu)`, fitted in closed form on the training split (no Δ, no training);
- the copy baseline (`evaluate_alignment(...)["copy_mse"]`).
"""

from __future__ import annotations

import torch

from .alignment import CoPEDeltaAligner, _stack

__all__ = ["ABLATIONS", "DeltaAblation", "ablate_delta", "mean_shrink_baseline", "per_step_mse", "with_vision_tokens"]

ABLATIONS = ("none", "zero", "shuffle")
_DELTA_KEYS = ("delta_motion_vectors", "delta_residuals")


class DeltaAblation(torch.utils.data.Dataset):
    """A view of an alignment dataset with its Δ inputs zeroed ("zero") or taken from another, fixed random step
    ("shuffle": a derangement, so no step keeps its own Δ); the frames (reference and target) are unchanged."""

    def __init__(self, dataset, mode: str, *, seed: int = 0):
        if mode not in ABLATIONS:
            raise ValueError(f"ablation must be one of {ABLATIONS}, got {mode!r}")
        self.dataset, self.mode = dataset, mode
        n = len(dataset)
        self.source = torch.arange(n)
        if mode == "shuffle" and n >= 2:
            generator = torch.Generator().manual_seed(seed)
            perm = torch.randperm(n, generator=generator)
            fixed = perm == torch.arange(n)
            while fixed.any():  # move fixed points one place on (a derangement)
                perm[fixed] = (perm[fixed] + 1) % n
                fixed = perm == torch.arange(n)
            self.source = perm

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = dict(self.dataset[index])
        if self.mode == "zero":
            for key in _DELTA_KEYS:
                item[key] = torch.zeros_like(item[key])
        elif self.mode == "shuffle":
            other = self.dataset[int(self.source[index])]
            for key in _DELTA_KEYS:
                item[key] = other[key]
        return item


def ablate_delta(dataset, mode: str, *, seed: int = 0):
    """`dataset` itself for "none", else a `DeltaAblation` view."""
    return dataset if mode == "none" else DeltaAblation(dataset, mode, seed=seed)


@torch.no_grad()
def with_vision_tokens(aligner: CoPEDeltaAligner, dataset, *, batch_size: int = 64) -> list[dict[str, torch.Tensor]]:
    """The dataset with the frozen tower's tokens in place of the frames (`reference_tokens`, `target_tokens`):
    the tower is frozen, so computing them once instead of at every training step changes nothing but the time."""
    out = []
    for start in range(0, len(dataset), batch_size):
        items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        batch = _stack(items)
        refs = aligner.vision_tokens(batch["pixel_values_reference"])
        targets = aligner.vision_tokens(batch["pixel_values_target"])
        for j, item in enumerate(items):
            out.append({"delta_motion_vectors": item["delta_motion_vectors"],
                        "delta_residuals": item["delta_residuals"],
                        "reference_tokens": refs[j], "target_tokens": targets[j]})
    return out


def _pair_tokens(aligner, batch):
    if "reference_tokens" in batch:
        return batch["reference_tokens"], batch["target_tokens"]
    return aligner.vision_tokens(batch["pixel_values_reference"]), aligner.vision_tokens(batch["pixel_values_target"])


@torch.no_grad()
def _tokens(aligner: CoPEDeltaAligner, dataset, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    refs, targets = [], []
    for start in range(0, len(dataset), batch_size):
        batch = _stack([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
        ref, target = _pair_tokens(aligner, batch)
        refs.append(ref)
        targets.append(target)
    return torch.cat(refs), torch.cat(targets)


@torch.no_grad()
def mean_shrink_baseline(aligner: CoPEDeltaAligner, train_dataset, eval_dataset, *,
                         batch_size: int = 64) -> dict[str, float]:
    """Held-out MSE of `mu + a * (reference - mu)`, with the per-channel mean `mu` of the target tokens and the scalar
    `a` fitted by least squares on the training split: what a Δ-blind model gets from shrinking alone."""
    ref, target = _tokens(aligner, train_dataset, batch_size)
    mu = target.mean(dim=(0, 1))
    x, y = ref - mu, target - mu
    a = float((x * y).sum() / (x * x).sum().clamp_min(1e-12))
    ref, target = _tokens(aligner, eval_dataset, batch_size)
    mse = (mu + a * (ref - mu) - target).pow(2).mean(dim=(1, 2))
    return {"mean_shrink_mse": float(mse.mean()), "shrink": a}


@torch.no_grad()
def per_step_mse(aligner: CoPEDeltaAligner, dataset, *, batch_size: int = 64) -> torch.Tensor:
    """Patch-wise MSE of the aligned prediction for every step of `dataset`, `(len(dataset),)` (for paired
    comparisons of two trained aligners on the same held-out steps)."""
    was_training = aligner.training
    aligner.eval()
    device = next(aligner.parameters()).device
    out = []
    try:
        for start in range(0, len(dataset), batch_size):
            batch = _stack([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
            out.append(aligner(**{k: v.to(device) for k, v in batch.items()}).patch_mse.cpu())
    finally:
        aligner.train(was_training)
    return torch.cat(out)
