"""After a run's selection: the Pareto files, why the winner won, and its registered model version."""
from __future__ import annotations

import json
from typing import Callable

from lambdaslim.records import Candidate
from lambdaslim.select.outputs import relative_to_root, write_pareto_files
from lambdaslim.select.pareto import run_entries, selection_report
from lambdaslim.spec.pipeline import Pipeline
from lambdaslim.store.atomic import write_json_atomic
from lambdaslim.tracking.model_registry import version_tags
from lambdaslim.tracking.tracker import Tracker


def finish_run(p: Pipeline, cands: list[Candidate], best: Candidate | None, tracker: Tracker,
               progress: Callable[[str], None] = print) -> dict:
    """After select_best: the Pareto table and plot and why the winner won (the `selection` section of
    report.json), logged to the parent run; the winner becomes a version of the registered model named
    after the pipeline, with the alias `lambda-candidate`."""
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
