"""A/B of the prefill path in one process: the model code of a git revision (baseline) against this checkout's, same
weights, same inputs, runs interleaved; optionally this checkout with `compile_encoders()` as a third variant.

Why: a change to the prefill path (the sync-free placeholder merge, compiled encoders) must be measured against the
code it replaces under the same machine load, which on a shared CPU box moves run to run by more than the change.
The baseline's `configuration_cope.py` + `modeling_cope.py` are exported from git into a temporary package (no
`__init__` side effects, so the Auto registrations stay this checkout's), the baseline model loads this checkout's
state dict (strict), and the outputs are compared before anything is timed.

Usage: python benchmarks/ab_prefill.py [--baseline REV] [--size cpu|tiny] [--repeats 5] [--compile]
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from _common import REPO, fmt_s, interleaved_runs, load_average, machine_info, median, table  # noqa: E402
from _gpu import profile_call  # noqa: E402

GOP = 8


def baseline_module(rev: str, where: Path):
    """`modeling_cope` of git revision `rev`, importable as `cope_baseline.modeling_cope`."""
    package = where / "cope_baseline"
    package.mkdir()
    (package / "__init__.py").write_text('"""modeling code of a git revision, for A/B timing"""\n')
    for name in ("configuration_cope.py", "modeling_cope.py"):
        text = subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:src/transformers_cope/{name}"],
                              capture_output=True, text=True, check=True).stdout
        (package / name).write_text(text)
    sys.path.insert(0, str(where))
    return importlib.import_module("cope_baseline.modeling_cope"), importlib.import_module(
        "cope_baseline.configuration_cope")


def merge_microbench(repeats: int) -> None:
    """The placeholder merge alone at the paper's 1 KF/GOP geometry (8 x 210 + 56 x 9 tokens in a 2.3k prompt,
    hidden 3584, fp32 on the CPU): the old path (count read back + masked_scatter, twice) against `_merge_features`,
    interleaved. The rest of the prefill is identical code in both, so this isolates the change."""
    from transformers_cope.modeling_cope import CoPEVideoLMModel

    torch.manual_seed(0)
    hidden, video, delta = 3584, 8 * 196, 56 * 8
    ids = torch.zeros(1, 2300, dtype=torch.long)
    ids[0, 20:20 + video] = 1
    ids[0, 20 + video + 100:20 + video + 100 + delta] = 2
    embeds = torch.randn(1, ids.shape[1], hidden)
    v, d = torch.randn(video, hidden), torch.randn(delta, hidden)

    def old():
        out = embeds
        for token, feats in ((1, v), (2, d)):
            mask = ids == token
            assert int(mask.sum()) == feats.shape[0]
            out = out.masked_scatter(mask.unsqueeze(-1).expand_as(out), feats)
        return out

    def new():
        return CoPEVideoLMModel._merge_features(embeds, [(ids == 1, v, "V", "v", "v"), (ids == 2, d, "D", "d", "d")])

    assert torch.equal(old(), new())
    times = interleaved_runs({"count + masked_scatter (before)": old, "_merge_features (after)": new}, repeats * 20)
    print()
    print(f"## The merge alone, paper 1 KF/GOP geometry on the CPU (median of {repeats * 20}, interleaved; outputs equal)")
    print(table(["path", "time"], [[k, fmt_s(median(t))] for k, t in times.items()]))


def main(argv=None) -> int:
    import bench_ttft

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline", default="main", help="git revision of the baseline model code (default main)")
    ap.add_argument("--size", choices=("cpu", "tiny"), default="cpu")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--compile", action="store_true", help="add this checkout + compile_encoders() (inductor)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--merge-only", action="store_true", help="time only the placeholder merge (microbenchmark)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.merge_only:
        merge_microbench(args.repeats)
        print(f"load average at end: {load_average()}")
        return 0
    rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", args.baseline], capture_output=True,
                         text=True, check=True).stdout.strip()
    print(f"# A/B of the prefill: baseline {args.baseline} ({rev}) vs this checkout; size {args.size}, CPU, fp32")
    for line in machine_info("cpu"):
        print(line)

    processor = bench_ttft.build_processor(args.size)
    config = bench_ttft.build_config(args.size, processor.tokenizer)
    current = bench_ttft.build_model(config, "cpu", torch.float32, "sdpa")
    with tempfile.TemporaryDirectory() as tmp:
        base_modeling, base_configuration = baseline_module(args.baseline, Path(tmp))
        base_config = base_configuration.CoPEVideoLMConfig.from_dict(config.to_dict())
        base_config._attn_implementation = "sdpa"
        baseline = base_modeling.CoPEVideoLMForConditionalGeneration._from_config(base_config,
                                                                                  attn_implementation="sdpa")
        baseline.load_state_dict(current.state_dict(), strict=True)
        baseline.eval()
        models = {"baseline": baseline, "this checkout": current}
        if args.compile:
            compiled = bench_ttft.build_model(config, "cpu", torch.float32, "sdpa")
            compiled.load_state_dict(current.state_dict(), strict=True)
            models["this checkout + compile_encoders"] = compiled.eval()
            compiled.model.compile_encoders()

        layouts, _ = bench_ttft.layout_batches(processor, bench_ttft.default_video(args.size, None), (GOP, 1))
        inputs = {name: bench_ttft.model_inputs(batch, "cpu", torch.float32) for name, (_, _, batch) in layouts.items()}
        with torch.inference_mode():  # same outputs before timing anything
            for name, kwargs in inputs.items():
                reference = current(**kwargs, use_cache=False, logits_to_keep=1).logits
                for label, model in models.items():
                    got = model(**kwargs, use_cache=False, logits_to_keep=1).logits
                    diff = (got - reference).abs().max().item()
                    print(f"outputs {label} vs this checkout, {name}: max abs diff {diff:.2e}")
                    if diff > 1e-4:
                        print("error: the variants disagree; not timing", file=sys.stderr)
                        return 1

        def job(model, kwargs):
            def run():
                with torch.inference_mode():
                    model(**kwargs, use_cache=True, logits_to_keep=1).logits[:, -1].argmax(-1).tolist()
            return run

        jobs = {(label, name): job(model, kwargs) for label, model in models.items() for name, kwargs in inputs.items()}
        times = interleaved_runs(jobs, args.repeats, warmup=1, progress="A/B prefill")
        rows = []
        for label, model in models.items():
            dense, one = median(times[(label, f"{GOP}/{GOP}")]), median(times[(label, f"1/{GOP}")])
            ops = profile_call(job(model, inputs[f"1/{GOP}"]), "cpu")["launches"]
            rows.append([label, fmt_s(dense), fmt_s(one), f"{one / dense:.3f}", f"{ops:,}"])
    print()
    print(f"## Prefill (TTFT) in one process, median of {args.repeats} interleaved runs after 1 warm-up")
    print(table(["model code", "dense TTFT", "1 KF/GOP TTFT", "1 KF/GOP ratio", "aten ops, 1 KF/GOP prefill"], rows))
    print(f"load average at end: {load_average()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
