"""Pick the best candidate that passed every gate, and copy it whole to the run's best/."""
from __future__ import annotations

import shutil
from pathlib import Path

from lambdaslim.records import Candidate
from lambdaslim.select.figures import rank
from lambdaslim.store.atomic import replace_dir, temp_path, write_json_atomic


def select_best(cands: list[Candidate], objective: str = "latency") -> Candidate | None:
    passed = [c for c in cands if c.passed]
    return rank(passed, objective)[0] if passed else None


def write_best(run_dir: Path, best: Candidate, source: Path | None = None) -> Path:
    """Copy the winner (from `source`, default its own path) with its record to run_dir/best, swapping it in whole."""
    dest = run_dir / "best"
    tmp = temp_path(dest)
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source or best.path, tmp, ignore=shutil.ignore_patterns("bench-*.json", "candidate.json"))
    write_json_atomic(tmp / "candidate.json", best.to_dict())
    replace_dir(tmp, dest)
    return dest


NO_WINNER = "NO_WINNER.json"


def write_no_winner(run_dir: Path, pipeline: str, cands: list[Candidate]) -> Path:
    """best/ holding only a note: a run without a winner is a recorded result (DVC still finds its output),
    and a stale winner from an earlier run can never be packaged."""
    dest = run_dir / "best"
    tmp = temp_path(dest)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write_json_atomic(tmp / NO_WINNER, {"pipeline": pipeline, "winner": None, "candidates": len(cands),
                                        "reason": "no candidate passed every gate; see report.json and pareto.md"})
    replace_dir(tmp, dest)
    return dest
