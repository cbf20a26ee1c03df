"""Benchmark for the pipeline spine (issue 2), on the reference pipeline's own candidates.

Targets at 1 vCPU: int8 accuracy drop <= 1.0 pt vs the PyTorch fp32 baseline, int8 size <= 30 % of the
fp32 ONNX, int8 p50 latency >= 2.5x faster than PyTorch fp32. Latency is measured here again, the
variants alternating in rounds so machine noise hits them alike; the ratio quoted is the median of
the per-round ratios. Accuracy comes from the run's report (the full evaluation split).

Run after `make repro`:  .venv/bin/python -m bench.bench_spine [--rounds 7 --calls 200]
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

from bench.checks import print_checks
from bench.rounds import alternating_p50, median_ratio
from lambdaslim.compressors import Artifact
from lambdaslim.data.splits import load_declared
from lambdaslim.spec.load import load_pipeline


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pipeline", default="configs/pipelines/sst2-minilm.yaml")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    p = load_pipeline(args.pipeline)
    report = json.loads((p.run_dir / "report.json").read_text())
    by_kind = {c["kind"]: c for c in report["candidates"]}
    base, fp32, int8 = by_kind["baseline"], by_kind["export_onnx"], by_kind["quantize_dynamic"]
    variants = {name: Artifact(Path(c["path"]), c["format"]) for name, c in
                [("pytorch_fp32", base), ("onnx_fp32", fp32), ("onnx_int8", int8)]}
    texts = load_declared(p.spec.data.eval, p.root, p.spec.model.label_names).texts
    p50 = alternating_p50(variants, texts, p.spec.data.max_length, args.rounds, args.calls, args.threads)
    speedup = median_ratio(p50, "pytorch_fp32", "onnx_int8")
    speedup_fp32 = median_ratio(p50, "pytorch_fp32", "onnx_fp32")
    drop = base["metrics"]["accuracy"] - int8["metrics"]["accuracy"]
    size_ratio = int8["size_bytes"] / fp32["size_bytes"]

    print(f"lambdaslim spine benchmark — {time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, "
          f"{args.threads} thread(s), {args.rounds} rounds x {args.calls} batch-1 calls on SST-2 validation")
    print(f"{'variant':14} {'accuracy %':>10} {'size MB':>9} {'p50 ms (median of rounds)':>26}")
    for n, c in [("pytorch_fp32", base), ("onnx_fp32", fp32), ("onnx_int8", int8)]:
        print(f"{n:14} {c['metrics']['accuracy']:>10.2f} {c['size_bytes'] / 1e6:>9.1f} {statistics.median(p50[n]):>26.2f}")
    checks = [
        ("int8 accuracy drop vs PyTorch fp32 (pt)", drop, "<=", 1.0),
        ("int8 size / fp32 ONNX size", size_ratio, "<=", 0.30),
        ("int8 p50 speed-up vs PyTorch fp32 (x)", speedup, ">=", 2.5),
    ]
    print(f"fp32 ONNX p50 speed-up vs PyTorch fp32: {speedup_fp32:.2f}x")
    return 0 if print_checks(checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
