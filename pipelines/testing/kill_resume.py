"""Kill and resume: a `lambdaslim run` killed with SIGKILL after N progress lines (plus a delay), then run
again to the end in the same project; the resumed result is compared with an uninterrupted run's, and the
MLflow store, the stage store and the run directory are checked for anything the kill left behind.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from lambdaslim.testing.cli_runs import CliRun, run_cli, tiny_project
from lambdaslim.testing.mlflow_runs import mlflow_runs, parents_and_children, tracking_uri
from lambdaslim.testing.run_outputs import comparable, first_difference, run_dir_leftovers, stage_store_problems


@dataclass
class KillTrial:
    """What one kill-and-resume left: was the run killed, is the resumed result identical, is everything clean."""

    point: str
    killed: bool
    identical: bool
    killed_run_closed: bool  # nothing left RUNNING; the killed process's run, if it was open, is KILLED and linked
    clean_store: bool
    detail: str = ""
    resumed_cached: int = 0
    killed_run_status: str | None = None  # None: killed before its MLflow run existed; FINISHED: after it closed it


def kill_and_resume(root: Path, model_dir: Path, reference: dict, kill_after_lines: int,
                    kill_delay_s: float = 0.0) -> KillTrial:
    """A fresh tiny project in `root`: `lambdaslim run` killed after `kill_after_lines` progress lines (+ a
    delay), then run again to the end; `reference` is comparable() of an uninterrupted run's report.json."""
    file = tiny_project(root, model_dir)
    point = f"after line {kill_after_lines}" + (f" + {kill_delay_s:.2f} s" if kill_delay_s else "")
    first = run_cli(file, root, kill_after_lines, kill_delay_s)
    if first.killed:
        point += f" ({first.killed_at[:40]!r})"
    second = run_cli(file, root)
    if second.rc != 0:
        return KillTrial(point, first.killed, False, False, False,
                         f"resumed run exit {second.rc}: {second.stderr[-2000:]}")
    report = json.loads((root / "artifacts" / "tiny" / "report.json").read_text())
    result = comparable(report, root)
    consistent, killed_run_status = mlflow_after_resume(root, first, second)
    problems = stage_store_problems(root / "artifacts" / "stages") + run_dir_leftovers(root / "artifacts" / "tiny")
    return KillTrial(point, first.killed, result == reference, consistent, not problems,
                     first_difference(result, reference) + "; ".join(problems),
                     sum(c["cached"] for c in report["candidates"]), killed_run_status)


def mlflow_after_resume(root: Path, killed: CliRun, resumed: CliRun) -> tuple[bool, str | None]:
    """(MLflow left consistent, the killed process's run status or None when it had none). Consistent: the
    resumed run FINISHED, no run left RUNNING, and the killed run, if the kill left it open, closed as KILLED
    and listed in the resumed run's `lambdaslim.resumes` tag."""
    parents, children = parents_and_children(mlflow_runs(tracking_uri(root), "tiny"))
    by_pid = {r.data.tags.get("lambdaslim.pid"): r for r in parents}
    killed_run, resumed_run = by_pid.get(str(killed.pid)), by_pid.get(str(resumed.pid))
    consistent = resumed_run is not None and resumed_run.info.status == "FINISHED"
    if consistent and killed.killed and killed_run is not None and killed_run.info.status != "FINISHED":
        resumes = resumed_run.data.tags.get("lambdaslim.resumes", "").split(",")
        consistent = killed_run.info.status == "KILLED" and killed_run.info.run_id in resumes
    consistent = consistent and not any(r.info.status == "RUNNING" for r in parents + children)
    return consistent, killed_run.info.status if killed_run is not None else None
