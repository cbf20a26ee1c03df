"""`lambdaslim select`: the best candidate across several pipeline runs.

Reads each run's report.json, merges candidates that are one artifact measured alike in several runs (a
shared baseline or prefix appears once, under the first run listed), computes the cross-pipeline Pareto
frontier and picks the best passing candidate under the objective. Every candidate keeps its own run's gate
verdicts: runs that start from the same baseline model were gated against one reference; when baselines
differ, the verdicts come from different references, and selection.json says so.

Writes OUT/best (the winner, like a run's best/), OUT/selection.json (why, and which pipeline file produced
the winner: `lambdaslim package OUT/best` reads it), OUT/metrics.json and OUT/pareto.{csv,md,png}; logs them
to a run of the MLflow experiment `lambdaslim-selection`; registers the winner (alias `lambda-candidate`).
"""
from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from lambdaslim.select.pareto import Entry, candidate_label, run_entries, selection_report
from lambdaslim.records import Candidate
from lambdaslim.store.atomic import write_json_atomic
from lambdaslim.select.figures import OBJECTIVES
from lambdaslim.select.outputs import relative_to_root, summary_metrics, write_pareto_files
from lambdaslim.select.best import select_best, write_best
from lambdaslim.spec.models import NAME_PATTERN
from lambdaslim.spec.errors import SpecError
from lambdaslim.spec.pipeline import project_root
from lambdaslim.tracking.model_registry import version_tags
from lambdaslim.tracking.tracker import Tracker, open_tracker

DEFAULT_MODEL_NAME = "lambdaslim-selected"
DEFAULT_EXPERIMENT = "lambdaslim-selection"


@dataclass(frozen=True)
class RunInfo:
    dir: Path
    pipeline: str
    mlflow_run_id: str | None
    pipeline_file: str | None  # relative to the project root when inside it
    objective: str
    cands: list[Candidate]
    candidate_runs: dict[str, str | None]  # candidate label -> its MLflow run

    @property
    def baseline_digest(self) -> str | None:
        return next((c.config_digest for c in self.cands if c.kind == "baseline"), None)


def load_run(run_dir: Path, root: Path) -> RunInfo:
    report = run_dir / "report.json"
    if not report.is_file():
        raise SpecError(f"{run_dir}: no report.json (a run directory is artifacts/<pipeline> after `lambdaslim run`)")
    try:
        data = json.loads(report.read_text())
        cands = [Candidate.from_dict(c) for c in data["candidates"]]
        name = data["pipeline"]
        sel = data["selection"]
        objective = sel["objective"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise SpecError(f"{report}: not a lambdaslim report ({type(e).__name__}: {e})") from None
    return RunInfo(run_dir, name, data.get("mlflow_run_id"), sel.get("pipeline_file"), objective, cands,
                   sel.get("mlflow_runs") or {})


def merged_entries(runs: list[RunInfo]) -> tuple[list[Entry], dict[str, list[str]]]:
    """One entry per distinct (artifact, verdict, figures); `shared` names the other runs that hold it."""
    entries: list[Entry] = []
    seen: dict[tuple, Entry] = {}
    shared: dict[str, list[str]] = {}
    for run in runs:
        for e in run_entries(run.pipeline, run.cands, qualify=True):
            c = e.cand
            key = (c.stage_key or c.config_digest, c.passed, c.metrics.get("accuracy"),
                   c.metrics.get("latency_p95_ms"), c.size_bytes)
            if key in seen:
                shared.setdefault(seen[key].label, []).append(run.pipeline)
                continue
            seen[key] = e
            entries.append(e)
    return entries, shared


def baselines(runs: list[RunInfo]) -> dict:
    digests = {r.pipeline: r.baseline_digest for r in runs}
    same = len(set(digests.values())) == 1
    note = ("all runs start from the same baseline model: their accuracy gates compare against one reference"
            if same else
            "the runs start from different baseline models: each candidate is judged by its own run's gate "
            "verdicts (accuracy against its own baseline), and accuracies are compared as measured")
    return {"same": same, "note": note, "digests": digests}


def common_objective(runs: list[RunInfo], given: str | None) -> str:
    if given is not None:
        if given not in OBJECTIVES:
            raise SpecError(f"select: --objective must be one of {', '.join(OBJECTIVES)}, not {given!r}")
        return given
    chosen = {r.objective for r in runs}
    if len(chosen) > 1:
        named = ", ".join(f"{r.pipeline}: {r.objective}" for r in runs)
        raise SpecError(f"select: the runs disagree on the objective ({named}); pass --objective latency|size")
    return chosen.pop()


def _winner_source(run: RunInfo, cand: Candidate) -> Path:
    """The run's best/ when it holds this candidate (DVC keeps it), else the stage folder the record names."""
    best = run.dir / "best" / "candidate.json"
    if best.is_file() and json.loads(best.read_text()).get("stage_key") == cand.stage_key:
        return run.dir / "best"
    if Path(cand.path).is_dir():
        return Path(cand.path)
    raise SpecError(f"{run.dir}: the model of {cand.stage} is gone ({cand.path}); run {run.pipeline} again")


def select_runs(run_dirs: list[str | Path], out: str | Path, objective: str | None = None,
                model_name: str = DEFAULT_MODEL_NAME, experiment: str = DEFAULT_EXPERIMENT,
                tracker: Tracker | None = None, progress: Callable[[str], None] = print) -> dict:
    for flag, value in (("--model-name", model_name), ("--experiment", experiment)):
        if not re.fullmatch(NAME_PATTERN, value):
            raise SpecError(f"select: {flag} {value!r} must be letters, digits, '_', '.', '-' (one path component)")
    if not run_dirs:
        raise SpecError("select: name at least one run directory (artifacts/<pipeline>)")
    dirs = [Path(d).resolve() for d in run_dirs]
    if len(set(dirs)) < len(dirs):
        raise SpecError("select: a run directory is named twice")
    root = project_root(dirs[0] / "report.json")
    runs = [load_run(d, root) for d in dirs]
    objective = common_objective(runs, objective)
    entries, shared = merged_entries(runs)
    best = select_best([e.cand for e in entries], objective)
    winner = next((e for e in entries if e.cand is best), None)
    report = selection_report(entries, winner, objective)
    run_of = {r.pipeline: r for r in runs}
    report |= {"runs": [{"pipeline": r.pipeline, "run_dir": relative_to_root(r.dir, root), "objective": r.objective,
                         "pipeline_file": r.pipeline_file, "mlflow_run_id": r.mlflow_run_id} for r in runs],
               "baselines": baselines(runs), "shared": shared, "winner": None, "registered": None,
               "runs_without_winner": [r.pipeline for r in runs if not any(c.passed for c in r.cands)]}
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    tracker = tracker or open_tracker(root, experiment)
    report["mlflow_run_id"] = tracker.start_pipeline("select", {
        "runs": ",".join(r.pipeline for r in runs), "objective": objective, "out": relative_to_root(out, root),
        "model_name": model_name}, {"lambdaslim.step": "select"})
    failed = True
    try:
        if winner is not None:
            run = run_of[winner.pipeline]
            source = _winner_source(run, winner.cand)
            write_best(out, winner.cand, source)
            report["winner"] = {"label": winner.label, "pipeline": winner.pipeline, "stage": winner.cand.stage,
                                "pipeline_file": _for_package(run.pipeline_file, root, out),
                                "config_digest": winner.cand.config_digest,
                                "source": relative_to_root(source, root)}
            report["registered"] = _register(tracker, model_name, winner, run, objective, report, out / "best")
        else:
            shutil.rmtree(out / "best", ignore_errors=True)  # a stale winner must never be packaged
        files = write_pareto_files(out, report, f"across {len(runs)} pipelines: accuracy vs p95 latency")
        write_json_atomic(out / "selection.json", report)
        write_json_atomic(out / "metrics.json", _metrics(report, winner, entries))
        tracker.log_files(files + [out / "selection.json", out / "metrics.json"])
        failed = False
    finally:
        tracker.end_pipeline({"candidates": len(entries), "frontier": len(report["frontier"])},
                             {"lambdaslim.selected": winner.label if winner else "none"}, failed)
    progress(f"selection across {', '.join(r.pipeline for r in runs)} -> {out} (MLflow run {report['mlflow_run_id']})")
    if report["runs_without_winner"]:
        progress(f"no candidate passed every gate in {', '.join(report['runs_without_winner'])}: chosen among the others")
    return report


def _for_package(pipeline_file: str | None, root: Path, out: Path) -> str | None:
    """As `lambdaslim package OUT/best` resolves it: from the project root when OUT is in the project, else whole."""
    if pipeline_file is None:
        return None
    return pipeline_file if out.is_relative_to(root) else str((root / pipeline_file).resolve())


def _register(tracker: Tracker, name: str, winner: Entry, run: RunInfo, objective: str, report: dict,
              model_dir: Path) -> dict | None:
    tags = version_tags(winner.cand, winner.pipeline, run.pipeline_file, objective)
    tags |= {"selection.runs": ",".join(r["pipeline"] for r in report["runs"]),
             "selection.baselines": "same" if report["baselines"]["same"] else "differ"}
    run_id = run.candidate_runs.get(candidate_label(winner.cand))
    return tracker.register_candidate(name, winner.cand, tags, run_id, model_dir, report["why"])


def _metrics(report: dict, winner: Entry | None, entries: list[Entry]) -> dict:
    """What `dvc metrics show` lists for the select stage: the same names as each pipeline's metrics."""
    return summary_metrics(winner.label if winner else None, winner.cand if winner else None,
                           [e.cand for e in entries]) | {"runs_without_winner": len(report["runs_without_winner"])}
