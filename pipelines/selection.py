"""Pick the best candidate that passed every gate, and write it (and the DVC metrics) to stable places."""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from pipelines.records import Candidate, write_json_atomic

if TYPE_CHECKING:
    from pipelines.spec import Pipeline
    from pipelines.tracking import Tracker


@dataclass(frozen=True)
class Figure:
    """One figure a candidate is judged on, and how a difference in it is said."""

    name: str
    unit: str
    worse: str  # "slower at p95 by 3 ms"
    better: str  # "faster at p95 by 3 ms"
    higher_is_better: bool
    digits: int  # compared at this precision, so a difference nobody can see never decides
    value: Callable[[Candidate], float]

    def cost(self, c: Candidate) -> float:
        v = round(self.value(c), self.digits)
        return -v if self.higher_is_better else v


ACCURACY = Figure("accuracy", "pt", "less accurate", "more accurate", True, 4, lambda c: c.metrics["accuracy"])
P95 = Figure("latency_p95_ms", "ms", "slower at p95", "faster at p95", False, 4,
             lambda c: c.metrics["latency_p95_ms"])
SIZE = Figure("size_mb", "MB", "larger", "smaller", False, 6, lambda c: c.size_bytes / 1e6)

# Passing candidates are ranked by these figures in turn; accuracy breaks exact ties, so the selected
# candidate is never dominated by another passing one (it is always on the Pareto frontier).
OBJECTIVE_FIGURES = {"latency": (P95, SIZE, ACCURACY), "size": (SIZE, P95, ACCURACY)}
OBJECTIVES = {name: (lambda c, figs=figs: tuple(f.cost(c) for f in figs)) for name, figs in OBJECTIVE_FIGURES.items()}


def select_best(cands: list[Candidate], objective: str = "latency") -> Candidate | None:
    passed = [c for c in cands if c.passed]
    return min(passed, key=OBJECTIVES[objective]) if passed else None


def write_best(run_dir: Path, best: Candidate, source: Path | None = None) -> Path:
    """Copy the winner (from `source`, default its own path) with its record to run_dir/best, swapping it in whole."""
    dest = run_dir / "best"
    tmp = run_dir / f".best.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source or best.path, tmp, ignore=shutil.ignore_patterns("bench-*.json", "candidate.json"))
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
        "pipeline": name, "mlflow_run_id": run_id, "best": best.label if best else None,
        "candidates": [c.to_dict() for c in cands],
    })
    keys = ("accuracy", "macro_f1", "size_mb", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "peak_rss_mb")
    figures = lambda c: {k: c.metrics[k] for k in keys if k in c.metrics} | {"passed": c.passed}  # noqa: E731
    # A variant's own candidates go under its name (their stage names recur in every variant); the baseline and
    # the stages all variants share stay under "stages", as in a pipeline without variants.
    variants: dict[str, dict] = {}
    for c in cands:
        if c.variant:
            variants.setdefault(c.variant, {})[c.stage] = figures(c)
    where = {"variant": best.variant} if best and best.variant else {}
    write_json_atomic(run_dir / "metrics.json", {
        "selected": ({"stage": best.stage} | where | figures(best)) if best else None,
        "stages": {c.stage: figures(c) for c in cands if not c.variant},
    } | ({"variants": variants} if variants else {}))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["stage", "accuracy", "latency_p95_ms", "latency_p50_ms", "size_mb", "passed"]
               + (["variant"] if variants else []))
    for c in cands:
        m = c.metrics
        w.writerow([c.stage, m["accuracy"], m["latency_p95_ms"], m["latency_p50_ms"], m["size_mb"], int(c.passed)]
                   + ([c.variant or ""] if variants else []))
    tmp = run_dir / f".plots.csv.{os.getpid()}.tmp"  # per process: two writers never share a temporary file
    tmp.write_text(buf.getvalue())
    os.replace(tmp, run_dir / "plots.csv")


def write_pareto_files(out_dir: Path, report: dict, title: str) -> list[Path]:
    """pareto.csv (what `dvc plots` reads), pareto.md and pareto.png of a selection report."""
    from pipelines.pareto import to_csv, to_markdown
    from pipelines.pareto_plot import plot_pareto

    files = []
    for name, text in (("pareto.csv", to_csv(report)), ("pareto.md", to_markdown(report))):
        tmp = out_dir / f".{name}.{os.getpid()}.tmp"  # per process: two writers never share a temporary file
        tmp.write_text(text)
        os.replace(tmp, out_dir / name)
        files.append(out_dir / name)
    return files + [plot_pareto(report, out_dir / "pareto.png", title)]


def relative_to_root(path: Path, root: Path) -> str:
    path = Path(path).resolve()
    return str(path.relative_to(root.resolve())) if path.is_relative_to(root.resolve()) else str(path)


def finish_run(p: "Pipeline", cands: list[Candidate], best: Candidate | None, tracker: "Tracker",
               progress: Callable[[str], None] = print) -> dict:
    """After select_best: the Pareto table and plot and why the winner won (the `selection` section of
    report.json), logged to the parent run; the winner becomes a version of the registered model named
    after the pipeline, with the alias `lambda-candidate`."""
    from pipelines.pareto import run_entries, selection_report
    from pipelines.registry import version_tags

    entries = run_entries(p.name, cands)
    report = selection_report(entries, next((e for e in entries if e.cand is best), None), p.spec.objective)
    report |= {"pipeline_file": relative_to_root(p.file, p.root), "registered": None,
               "mlflow_runs": {e.label: tracker.candidate_run(e.cand) for e in entries}}  # for `lambdaslim select`
    files = write_pareto_files(p.run_dir, report, f"{p.name}: accuracy vs p95 latency per candidate")
    tracker.log_files(files)
    line = f"pareto: {len(report['frontier'])} of {len(cands)} candidate(s) on the frontier -> {p.run_dir / 'pareto.png'}"
    if best is not None and p.spec.tracking.register_model:
        tags = version_tags(best, p.name, report["pipeline_file"], p.spec.objective)
        report["registered"] = tracker.register_candidate(p.name, best, tags, tracker.candidate_run(best),
                                                          p.run_dir / "best", report["why"])
        if report["registered"]:
            line += f"; registered {p.name} version {report['registered']['version']} (alias lambda-candidate)"
    full = json.loads((p.run_dir / "report.json").read_text())
    write_json_atomic(p.run_dir / "report.json", full | {"selection": report})
    progress(line)
    return report
