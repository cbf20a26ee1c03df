"""Benchmark for distillation (issue 4), on the distilled reference pipeline's own candidates.

Targets at 1 vCPU: the distilled 3-layer student plus int8 loses <= 2.0 points of accuracy vs the 6-layer
fp32 teacher, weighs <= 15 % of the teacher's fp32 ONNX, and its p50 latency is >= 5x faster than the
PyTorch fp32 teacher. Latency is measured here again, alternating in rounds (the ratio is the median of
per-round ratios); accuracy comes from the runs' reports (the full evaluation split). The distillation's
wall time is the stage's own record (resumed attempts included).

Run after `make repro`:  .venv/bin/python -m bench.bench_distill [--rounds 7 --calls 200]
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
    ap.add_argument("--distilled", default="configs/pipelines/sst2-minilm-distilled.yaml")
    ap.add_argument("--teacher-pipeline", default="configs/pipelines/sst2-minilm.yaml",
                    help="a run of the teacher whose export_onnx candidate is the teacher's fp32 ONNX")
    ap.add_argument("--stage", default=None, help="the student candidate, as 'variant/stage' in a run with variants "
                                                  "(default: the run's selected candidate, else its last)")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=200)
    args = ap.parse_args()

    p = load_pipeline(args.distilled)
    report = json.loads((p.run_dir / "report.json").read_text())
    cands = report["candidates"]
    teacher = next(c for c in cands if c["kind"] == "baseline")
    label = lambda c: f"{c['variant']}/{c['stage']}" if c.get("variant") else c["stage"]  # noqa: E731
    wanted = args.stage or report["best"]
    student = next((c for c in cands if label(c) == wanted), None) if wanted else cands[-1]
    if student is None:
        raise SystemExit(f"no candidate {wanted!r} in {p.run_dir / 'report.json'}")
    t_report = json.loads((load_pipeline(args.teacher_pipeline).run_dir / "report.json").read_text())
    teacher_onnx = next(c for c in t_report["candidates"] if c["kind"] == "export_onnx")
    if t_report["candidates"][0]["stage_key"] != teacher["stage_key"]:
        raise SystemExit("the two runs have different baselines: the teacher ONNX would not be this teacher's")

    arts = {"teacher_pytorch": Artifact(Path(teacher["path"]), "pytorch"),
            "teacher_onnx": Artifact(Path(teacher_onnx["path"]), "onnx"),
            "student": Artifact(Path(student["path"]), student["format"])}
    texts = load_declared(p.spec.data.eval, p.root, p.spec.model.label_names).texts
    p50 = alternating_p50(arts, texts, p.spec.data.max_length, args.rounds, args.calls)
    rows = {"teacher_pytorch": teacher, "teacher_onnx": teacher_onnx, "student": student}
    drop = teacher["metrics"]["accuracy"] - student["metrics"]["accuracy"]

    print(f"lambdaslim distillation benchmark — {time.strftime('%Y-%m-%d')}, {platform.machine()}, 1 thread, "
          f"{args.rounds} rounds x {args.calls} batch-1 calls on SST-2 validation")
    chain = [c for c in cands[1:cands.index(student) + 1] if c.get("variant") in (None, student.get("variant"))]
    print(f"student = {label(student)}: {' -> '.join(c['stage'] for c in chain)}")
    print(f"{'variant':16} {'accuracy %':>10} {'size MB':>9} {'p50 ms':>8}")
    for n, c in rows.items():
        print(f"{n:16} {c['metrics']['accuracy']:>10.2f} {c['size_bytes'] / 1e6:>9.2f} {statistics.median(p50[n]):>8.2f}")
    distills = [c for c in chain if c["kind"] == "distill"]
    for d in distills:  # every distillation in the student's chain, with its recorded training time
        info = d["stage_info"]
        print(f"{d['stage']}: {info['student_layers']} of {info['teacher_layers']} layers, {info['train_steps']} steps, "
              f"wall time {info['train_minutes']:.1f} min (resumed from step {info['train_resumed_from_step']}); "
              f"PyTorch student {d['metrics']['accuracy']:.2f}%; KD loss {info['kd_loss_before']} -> {info['kd_loss_after']}")
    print(f"distillation wall time in the chain: {sum(d['stage_info']['train_minutes'] for d in distills):.1f} min")
    checks = [
        ("student accuracy drop vs fp32 teacher (pt)", drop, "<=", 2.0),
        ("student size / teacher fp32 ONNX size", student["size_bytes"] / teacher_onnx["size_bytes"], "<=", 0.15),
        ("student p50 speed-up vs PyTorch fp32 teacher (x)", median_ratio(p50, "teacher_pytorch", "student"), ">=", 5.0),
    ]
    print(f"student p50 speed-up vs teacher fp32 ONNX: {median_ratio(p50, 'teacher_onnx', 'student'):.2f}x")
    return 0 if print_checks(checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
