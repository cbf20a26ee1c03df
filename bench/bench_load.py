"""Do the measurements hold under load? Every candidate of the reference pipelines measured quiet and with a
CPU-burning process on every other core, alternately; the gates and the selection decided on both.

Prints: verdicts equal / candidates, selections equal / pipelines (and across them), and the spread of each
latency figure (loaded / quiet): the gated CPU-time estimate and the wall clock.

Run after `make repro`:  .venv/bin/python -m bench.bench_load [--pipelines a.yaml b.yaml] [--runs 200]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

from bench.checks import print_checks
from lambdaslim.aws.budgets import budgets_for
from lambdaslim.compressors.base import Artifact
from lambdaslim.data.splits import load_declared
from lambdaslim.measure.benchmarks import measure_latency
from lambdaslim.measure.latency_worker import LatencyWorker
from lambdaslim.records import Candidate
from lambdaslim.run.gates import evaluate_gates
from lambdaslim.select.best import select_best
from lambdaslim.spec.load import load_pipeline
from lambdaslim.testing.burner import cpu_burners

REFERENCE = ("configs/pipelines/sst2-minilm.yaml", "configs/pipelines/sst2-minilm-static.yaml",
             "configs/pipelines/sst2-minilm-distilled.yaml")
FIGURES = ("latency_p95_ms", "wall_p95_ms", "latency_p50_ms", "wall_p50_ms")


def measure_both(p, cands: list[Candidate], runs: int, burners: int | None) -> dict[str, dict[str, dict]]:
    """condition -> candidate label -> latency figures; quiet and loaded alternate candidate by candidate."""
    texts = load_declared(p.spec.data.eval, p.root, p.spec.model.label_names).texts
    base = Artifact(Path(cands[0].path), cands[0].format)
    out: dict[str, dict[str, dict]] = {"quiet": {}, "loaded": {}}
    with LatencyWorker(p.target.vcpus, os.cpu_count() or 1) as worker:  # as a run measures: one process
        for c in cands:
            b = budgets_for(p.target, c.format)
            art = Artifact(Path(c.path), c.format)
            args = (art, texts, p.spec.data.max_length, b.threads, b.vcpus, runs, p.spec.benchmark.warmup_runs,
                    None if c.index == 0 else base, worker)
            out["quiet"][c.label] = measure_latency(*args)
            with cpu_burners(burners):
                time.sleep(1.0)  # let the burners reach full speed
                out["loaded"][c.label] = measure_latency(*args)
    return out


def verdicts(p, cands: list[Candidate], figures: dict[str, dict]) -> list[Candidate]:
    """The candidates re-gated with the latency figures of one condition (accuracy, size, memory unchanged)."""
    redone = []
    for c in cands:
        d = c.to_dict()
        d["metrics"] = c.metrics | figures[c.label]
        r = Candidate.from_dict(d)
        base = cands[0].metrics | figures[cands[0].label]
        r.gates = evaluate_gates(p, c.format, r.metrics, base)
        redone.append(r)
    return redone


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pipelines", nargs="+", default=list(REFERENCE))
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--burners", type=int, default=None, help="busy processes (default: one per core but one)")
    args = ap.parse_args()
    equal = total = sel_equal = 0
    ratios: dict[str, list[float]] = {f: [] for f in FIGURES}
    across = {"quiet": [], "loaded": []}
    for file in args.pipelines:
        p = load_pipeline(file)
        report = json.loads((p.run_dir / "report.json").read_text())
        cands = [Candidate.from_dict(c) for c in report["candidates"] if c.get("trial") is None]
        measured = measure_both(p, cands, args.runs, args.burners)
        quiet, loaded = verdicts(p, cands, measured["quiet"]), verdicts(p, cands, measured["loaded"])
        for q, lo in zip(quiet, loaded):
            same = [v.passed for v in q.gates] == [v.passed for v in lo.gates]
            equal, total = equal + same, total + 1
            for f in FIGURES:
                ratios[f].append(lo.metrics[f] / q.metrics[f])
            print(f"{p.name}/{q.label}: p95 est {q.metrics['latency_p95_ms']:.3f} -> {lo.metrics['latency_p95_ms']:.3f} "
                  f"ms, wall {q.metrics['wall_p95_ms']:.3f} -> {lo.metrics['wall_p95_ms']:.3f} ms, verdicts "
                  f"{'equal' if same else 'DIFFER'}")
        wq, wl = select_best(quiet, p.spec.objective), select_best(loaded, p.spec.objective)
        sel_equal += (wq and wq.label) == (wl and wl.label)
        print(f"{p.name}: selected quiet {wq and wq.label}, loaded {wl and wl.label}")
        across["quiet"] += quiet
        across["loaded"] += loaded
    gq, gl = select_best(across["quiet"]), select_best(across["loaded"])
    same_across = (gq and (gq.path, gq.label)) == (gl and (gl.path, gl.label))
    print(f"across pipelines: quiet {gq and gq.label} ({gq and gq.path}), loaded {gl and gl.label} ({gl and gl.path})")
    for f in FIGURES:
        print(f"{f} loaded/quiet: median {statistics.median(ratios[f]):.3f}x, max {max(ratios[f]):.3f}x")
    return 0 if print_checks([
        ("verdicts equal / candidates", equal / total, ">=", 1.0),
        ("selections equal / pipelines", sel_equal / len(args.pipelines), ">=", 1.0),
        ("across-pipeline selection equal", float(same_across), ">=", 1.0),
        ("gated p95 loaded/quiet, max", max(ratios["latency_p95_ms"]), "<=", 1.15),
    ]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
