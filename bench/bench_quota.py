"""A real CPU quota for fractional vCPUs, against the CFS model and the old multiplier, on the reference.

For the reference pipeline's fp32 ONNX export and its int8 candidate, at 512, 1,024 and 1,769 MB: latency
measured in a fresh process inside a cgroup whose CPU quota is the target's vCPU share (wall clock under the
quota: what Lambda would show), next to the CFS quota model applied to the calls' CPU time (the gated figure)
and to the multiplier (CPU time x ceil(v)/v) used where no cgroup can be made. Ratios are model / real.

Run after `make repro`:  .venv/bin/python -m bench.bench_quota [--pipeline FILE] [--runs 200]
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from bench.checks import print_checks
from lambdaslim.aws.limits import MB_PER_VCPU
from lambdaslim.compressors.base import Artifact
from lambdaslim.data.splits import load_declared
from lambdaslim.measure.benchmarks import measure_latency
from lambdaslim.measure.cpu_quota import quota_support
from lambdaslim.spec.load import load_pipeline

MEMORY_MB = (512, 1024, 1769)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pipeline", default="configs/pipelines/sst2-minilm.yaml")
    ap.add_argument("--runs", type=int, default=200)
    args = ap.parse_args()
    reason = quota_support()
    if reason is not None:
        print(f"no CPU quota can be made here ({reason}): nothing to compare")
        return 1
    p = load_pipeline(args.pipeline)
    report = json.loads((p.run_dir / "report.json").read_text())
    by_kind = {c["kind"]: c for c in report["candidates"] if c.get("trial") is None}
    texts = load_declared(p.spec.data.eval, p.root, p.spec.model.label_names).texts
    rows, checks = [], []
    for kind in ("export_onnx", "quantize_dynamic"):
        art = Artifact(Path(by_kind[kind]["path"]), "onnx")
        for mb in MEMORY_MB:
            share = mb / MB_PER_VCPU
            m = measure_latency(art, texts, p.spec.data.max_length, 1, share, args.runs, 20)
            mult = m["cpu_p95_ms"] * math.ceil(share) / share
            rows.append((kind, mb, share, m["wall_p95_ms"], m["latency_p95_ms"], mult, m["wall_p50_ms"],
                         m["latency_p50_ms"]))
            checks.append((f"{kind} {mb} MB: model p95 / real p95", m["latency_p95_ms"] / m["wall_p95_ms"]))
    print(f"{'candidate':18} {'MB':>5} {'vCPU':>5} {'real p95':>9} {'model p95':>9} {'mult p95':>9} "
          f"{'real p50':>9} {'model p50':>9}")
    for kind, mb, share, real, model, mult, real50, model50 in rows:
        print(f"{kind:18} {mb:5d} {share:5.2f} {real:9.3f} {model:9.3f} {mult:9.3f} {real50:9.3f} {model50:9.3f}")
    for kind, mb, share, real, model, mult, *_ in rows:
        print(f"{kind} {mb} MB: multiplier p95 / real p95 {mult / real:.3f}")
    return 0 if print_checks([(label, v, "<=", 1.25) for label, v in checks]
                             + [(label.replace("<=", ">="), v, ">=", 0.8) for label, v in checks]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
