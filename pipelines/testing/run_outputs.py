"""Reading back what a `lambdaslim run` left on disk: its report.json made comparable between two runs
(timings, memory and cache flags left out), the first difference between two such reports, and anything in
the stage store that is, or could pass for, an unfinished stage.
"""
from __future__ import annotations

import copy
import re
from pathlib import Path

TIMING_METRICS = re.compile(r"^(latency_|cpu_|wall_|speedup|conditions$|peak_rss|init_s|rss)")
TIMING_GATES = {"latency_p95", "memory"}  # their value and margin are measured times and memory
TIMING_INFO = re.compile(r"(rss|_ms$|_s$|seconds|cached)")


def comparable(report: dict, root: Path) -> dict:
    """report.json without what depends on the clock or on which run did the work: timings, memory,
    cache flags and the MLflow run id; paths inside the project relative to its root (`root`).
    Everything else must be identical between two runs."""
    out = {"pipeline": report["pipeline"], "best": report["best"], "candidates": []}
    for candidate in report["candidates"]:
        candidate = copy.deepcopy(candidate)
        candidate.pop("cached", None)
        if Path(candidate["path"]).is_relative_to(root):
            candidate["path"] = str(Path(candidate["path"]).relative_to(root))
        candidate["metrics"] = {k: v for k, v in candidate["metrics"].items() if not TIMING_METRICS.match(k)}
        candidate["stage_info"] = {k: v for k, v in candidate["stage_info"].items() if not TIMING_INFO.search(k)}
        for gate in candidate["gates"]:
            if gate["gate"] in TIMING_GATES:
                gate.pop("value"), gate.pop("margin"), gate.pop("detail", None)
        out["candidates"].append(candidate)
    return out


def first_difference(a, b, where: str = "") -> str:
    """The first place two JSON-like values differ ("" when they are equal)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            if a.get(key, "<missing>") != b.get(key, "<missing>"):
                return first_difference(a.get(key, "<missing>"), b.get(key, "<missing>"), f"{where}.{key}")
        return ""
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return next((first_difference(x, y, f"{where}[{i}]") for i, (x, y) in enumerate(zip(a, b)) if x != y), "")
    return "" if a == b else f"{where.lstrip('.')}: {str(a)[:200]} != {str(b)[:200]}"


def stage_store_problems(store: Path) -> list[str]:
    """Anything in the stage store that could be mistaken for, or is, an unfinished stage."""
    problems = []
    for entry in sorted(store.iterdir()) if store.is_dir() else []:
        if entry.name.startswith("."):
            problems.append(f"leftover {entry.name}")
        elif entry.name != "cache" and not entry.name.startswith("baseline-") and not (entry / "stage.json").is_file():
            problems.append(f"{entry.name} has no stage.json")
    return problems


def run_dir_leftovers(run_dir: Path) -> list[str]:
    """Hidden (half-written) files left in a pipeline's run directory, its lock file aside."""
    return [p.name for p in run_dir.rglob(".*") if p.name != ".lock"]
