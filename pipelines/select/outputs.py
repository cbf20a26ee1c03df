"""What a run writes for DVC and people: report.json, metrics.json, plots.csv, the Pareto files."""
from __future__ import annotations

import csv
import io
from pathlib import Path

from lambdaslim.records import Candidate
from lambdaslim.select.pareto import to_csv, to_markdown
from lambdaslim.select.plot import plot_pareto
from lambdaslim.store.atomic import write_json_atomic, write_text_atomic


# The same few names in every metrics file (each pipeline's and the selection's), so `dvc metrics show`
# prints one narrow table; the per-candidate figures are in plots.csv, pareto.md and report.json.
SUMMARY_FIGURES = ("accuracy", "latency_p95_ms", "size_mb")


def summary_metrics(winner: str | None, best: Candidate | None, cands: list[Candidate]) -> dict:
    """What `dvc metrics show` lists for a run or a selection: the winner (or "none") and its key figures."""
    out = {"winner": winner or "none", "passed": sum(c.passed for c in cands), "candidates": len(cands)}
    if best is not None:
        out |= {k: round(best.metrics[k], 4) for k in SUMMARY_FIGURES}
    return out


def write_dvc_outputs(run_dir: Path, name: str, cands: list[Candidate], best: Candidate | None, run_id: str) -> None:
    """report.json (every record), metrics.json (what `dvc metrics` reads) and plots.csv (`dvc plots`)."""
    write_json_atomic(run_dir / "report.json", {
        "pipeline": name, "mlflow_run_id": run_id, "best": best.label if best else None,
        "candidates": [c.to_dict() for c in cands],
    })
    write_json_atomic(run_dir / "metrics.json", summary_metrics(best.label if best else None, best, cands))
    variants = any(c.variant for c in cands)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["stage", "accuracy", "latency_p95_ms", "latency_p50_ms", "size_mb", "passed"]
               + (["variant"] if variants else []))
    for c in cands:
        m = c.metrics
        w.writerow([c.stage, m["accuracy"], m["latency_p95_ms"], m["latency_p50_ms"], m["size_mb"], int(c.passed)]
                   + ([c.variant or ""] if variants else []))
    write_text_atomic(run_dir / "plots.csv", buf.getvalue())


def write_pareto_files(out_dir: Path, report: dict, title: str) -> list[Path]:
    """pareto.csv (what `dvc plots` reads), pareto.md and pareto.png of a selection report."""
    files = []
    for name, text in (("pareto.csv", to_csv(report)), ("pareto.md", to_markdown(report))):
        write_text_atomic(out_dir / name, text)
        files.append(out_dir / name)
    return files + [plot_pareto(report, out_dir / "pareto.png", title)]


def relative_to_root(path: Path, root: Path) -> str:
    path = Path(path).resolve()
    return str(path.relative_to(root.resolve())) if path.is_relative_to(root.resolve()) else str(path)
