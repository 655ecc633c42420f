"""Shared helpers of the GPU-path benchmarks: which attention backend ran, kernel launches and host vs device time of
one forward (torch.profiler), host syncs inside a forward, and device-following tensor builders.

Why: the paper-size prefill of CoPE-VideoLM is small enough to be launch-bound on a large GPU (an earlier H200 run:
1,886 kernel launches, 74 ms of host time against 69 ms of GPU time for the 1 KF/GOP forward), so the benchmarks
report launches, host time and syncs next to the wall time, and say which attention kernels really ran, not only
which `attn_implementation` was asked for. Every tensor these helpers build follows the device of its input
(tests/test_gpu_path.py runs them on fake CUDA tensors on a CPU-only machine).
"""

from __future__ import annotations

import importlib.util
import time
import warnings
from collections.abc import Callable

import torch


def visual_token_mask(input_ids: torch.Tensor, token_ids: list[int]) -> torch.Tensor:
    """Bool mask of the positions of `input_ids` holding any of `token_ids`, built on `input_ids.device` (the ids
    built on the host made `torch.isin` fail with CUDA input_ids on the first paper-size GPU run)."""
    ids = torch.tensor(list(token_ids), dtype=input_ids.dtype, device=input_ids.device)
    return torch.isin(input_ids, ids)


def to_device(batch: dict, device: str | torch.device, dtype: torch.dtype, float_keys: tuple[str, ...]) -> dict:
    """Tensors of a processor batch moved to `device`; the float inputs named in `float_keys` cast to `dtype`; other
    values (frame-type strings, timestamps) passed through."""
    out = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            value = value.to(device, dtype) if key in float_keys else value.to(device)
        out[key] = value
    return out


# ------------------------------------------------------------------------------------------------ attention backends


def installed_attention_packages() -> dict[str, bool]:
    """Which optional attention packages are importable here (`flash_attn` for flash_attention_2, `kernels` for the
    `kernels-community/...` hub kernels and the automatic flash fallback)."""
    return {name: importlib.util.find_spec(name) is not None for name in ("flash_attn", "kernels")}


def pick_attention(requested: str, device: str) -> tuple[str, str]:
    """`(implementation to use, why)`: `requested` unless it needs a package that is missing or a GPU that is not
    there, then `sdpa`. "auto" picks the fastest available: flash_attention_2 with flash_attn on CUDA, else sdpa."""
    packages = installed_attention_packages()
    on_cuda = str(device).startswith("cuda")
    if requested == "auto":
        if on_cuda and packages["flash_attn"]:
            return "flash_attention_2", "auto: flash_attn is installed"
        return "sdpa", "auto: " + ("flash_attn and kernels not installed" if on_cuda else "not on a GPU")
    if requested.startswith("flash_attention") and not on_cuda:
        return "sdpa", f"{requested} needs a CUDA GPU"
    if requested.startswith("flash_attention") and not (packages["flash_attn"] or packages["kernels"]):
        return "sdpa", f"{requested} needs flash_attn (or kernels for the hub fallback); neither is installed"
    if "/" in requested and not packages["kernels"]:
        return "sdpa", f"{requested} is a hub kernel and needs the `kernels` package (not installed)"
    return requested, "as requested"


def attention_report(model: torch.nn.Module, requested: str, why: str, kernel_names: list[str] | None = None) -> str:
    """One line: what was asked for, what each sub-model's config says it runs, and the attention kernels that the
    profiler saw (the proof: sdpa may pick the flash, memory-efficient, cuDNN or math kernel)."""
    config = model.config
    parts = []
    for name in ("text_config", "vision_config", "delta_config"):
        sub = getattr(config, name, None)
        if sub is not None:
            parts.append(f"{name.split('_')[0]} {getattr(sub, '_attn_implementation', None)}")
    line = f"attention: requested {requested} -> {why}; configured: {', '.join(parts)}"
    packages = installed_attention_packages()
    line += "; installed: " + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in packages.items())
    if kernel_names is not None:
        seen = sorted({n for n in kernel_names if _is_attention_kernel(n)})
        line += "; attention kernels seen: " + (", ".join(_short(n) for n in seen[:6]) if seen else "none recorded")
    return line


def _is_attention_kernel(name: str) -> bool:
    low = name.lower()
    return any(key in low for key in ("flash", "fmha", "attention", "sdpa", "cudnn_sdp", "efficient_attention"))


def _short(name: str, limit: int = 70) -> str:
    return name if len(name) <= limit else name[: limit - 3] + "..."


# ------------------------------------------------------------------------------------------------ profiling


def profile_call(fn: Callable[[], object], device: str) -> dict[str, object]:
    """Run `fn` once under torch.profiler and count what it launched.

    On CUDA: `launches` = kernels + memcpy/memset on the device, `device_ms` = their summed duration, `host_ms` = wall
    time of the call until the host is done issuing (before the final synchronize). On CPU: `launches` = aten op
    calls (the same host-side dispatch count; no device time). `kernel_names` lists device kernels (CUDA) or aten ops.
    """
    from torch.profiler import ProfilerActivity, profile

    on_cuda = str(device).startswith("cuda")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_cuda else [])
    if on_cuda:
        torch.cuda.synchronize()
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        fn()
        host = time.perf_counter() - start
        if on_cuda:
            torch.cuda.synchronize()
        wall = time.perf_counter() - start
    events = prof.events()
    if on_cuda:
        device_events = [e for e in events if _on_device(e)]
        names = [e.name for e in device_events]
        device_ms = sum(_device_us(e) for e in device_events) / 1000.0
        return {"launches": len(device_events), "device_ms": device_ms, "host_ms": host * 1000.0,
                "wall_ms": wall * 1000.0, "kernel_names": names}
    names = [e.name for e in events if e.name.startswith("aten::")]
    return {"launches": len(names), "device_ms": float("nan"), "host_ms": host * 1000.0, "wall_ms": wall * 1000.0,
            "kernel_names": names}


def _on_device(event) -> bool:
    device_type = getattr(event, "device_type", None)
    return device_type is not None and str(device_type).endswith("CUDA")


def _device_us(event) -> float:
    """Duration of a device event in µs (`device_time_total` is the event's own time range for device events)."""
    return float(getattr(event, "device_time_total", 0.0) or 0.0)


def count_host_syncs(fn: Callable[[], object], device: str) -> int | None:
    """Host<->device synchronisations inside `fn` (CUDA only: `torch.cuda.set_sync_debug_mode` warns on each one);
    None elsewhere (tests/test_gpu_path.py checks the CPU side with fake tensors, which refuse any host read)."""
    if not str(device).startswith("cuda"):
        return None
    torch.cuda.synchronize()
    previous = torch.cuda.get_sync_debug_mode()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode(previous)
    return sum("synchroniz" in str(w.message).lower() for w in caught)


def fmt_ms(value: float) -> str:
    return "n/a" if value != value else f"{value:.1f} ms"
