"""Pick the best candidate that passed every gate, and write it (and the DVC metrics) to stable places."""
from __future__ import annotations

import csv
import io
import os
import shutil
from pathlib import Path

from pipelines.records import Candidate, write_json_atomic

OBJECTIVES = {
    "latency": lambda c: (c.metrics["latency_p95_ms"], c.size_bytes),
    "size": lambda c: (c.size_bytes, c.metrics["latency_p95_ms"]),
}


def select_best(cands: list[Candidate], objective: str = "latency") -> Candidate | None:
    passed = [c for c in cands if c.passed]
    return min(passed, key=OBJECTIVES[objective]) if passed else None


def write_best(run_dir: Path, best: Candidate) -> Path:
    """Copy the winner with its record to run_dir/best, swapping it in whole."""
    dest = run_dir / "best"
    tmp = run_dir / f".best.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(best.path, tmp, ignore=shutil.ignore_patterns("bench-*.json"))
    write_json_atomic(tmp / "candidate.json", best.to_dict())
    old = run_dir / f".best.old-{os.getpid()}"
    if dest.exists():
        os.replace(dest, old)
    os.replace(tmp, dest)
    shutil.rmtree(old, ignore_errors=True)
    return dest


def write_dvc_outputs(run_dir: Path, name: str, cands: list[Candidate], best: Candidate | None, run_id: str) -> None:
    """report.json (every record), metrics.json (what `dvc metrics` reads) and plots.csv (`dvc plots`)."""
    write_json_atomic(run_dir / "report.json", {
        "pipeline": name, "mlflow_run_id": run_id, "best": best.stage if best else None,
        "candidates": [c.to_dict() for c in cands],
    })
    keys = ("accuracy", "macro_f1", "size_mb", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "peak_rss_mb")
    figures = lambda c: {k: c.metrics[k] for k in keys if k in c.metrics} | {"passed": c.passed}  # noqa: E731
    write_json_atomic(run_dir / "metrics.json", {
        "selected": ({"stage": best.stage} | figures(best)) if best else None,
        "stages": {c.stage: figures(c) for c in cands},
    })
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["stage", "accuracy", "latency_p95_ms", "latency_p50_ms", "size_mb", "passed"])
    for c in cands:
        m = c.metrics
        w.writerow([c.stage, m["accuracy"], m["latency_p95_ms"], m["latency_p50_ms"], m["size_mb"], int(c.passed)])
    tmp = run_dir / f".plots.csv.{os.getpid()}.tmp"  # per process: two writers never share a temporary file
    tmp.write_text(buf.getvalue())
    os.replace(tmp, run_dir / "plots.csv")
