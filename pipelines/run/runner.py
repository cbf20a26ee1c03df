"""Run a pipeline: for the baseline and after every stage, measure -> gate -> track; then select."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from lambdaslim.aws.budgets import budgets_for
from lambdaslim.compressors.base import Artifact
from lambdaslim.measure.cpu_quota import sweep_stale_quota_groups
from lambdaslim.records import Candidate
from lambdaslim.run.fallback import repair_accuracy
from lambdaslim.run.session import Chain, Session
from lambdaslim.select.best import select_best, write_best, write_no_winner
from lambdaslim.select.finish import finish_run
from lambdaslim.select.outputs import write_dvc_outputs
from lambdaslim.spec.pipeline import Pipeline
from lambdaslim.store.atomic import write_json_atomic
from lambdaslim.store.locks import pipeline_lock, sweep_stale_temps
from lambdaslim.tracking.tracker import MlflowTracker, Tracker, open_tracker


@dataclass
class RunResult:
    pipeline: str
    run_dir: Path
    candidates: list[Candidate]
    best: Candidate | None
    parent_run_id: str


def run_pipeline(file: str | Path, tracker: Tracker | None = None,
                 progress: Callable[[str], None] = print) -> RunResult:
    s = Session.open(file)
    # One run per pipeline at a time (a second one waits, then reuses every finished stage); different
    # pipelines run side by side, sharing the stage store, whose entries are written whole or not at all.
    with pipeline_lock(s.run_dir, progress):
        s.stage_store.mkdir(parents=True, exist_ok=True)
        for left in sweep_stale_temps(s.stage_store, depth=2) + sweep_stale_temps(s.run_dir, depth=2):
            progress(f"removed {left.relative_to(s.p.root) if left.is_relative_to(s.p.root) else left} "
                     f"(left half-written by a process that was killed)")
        sweep_stale_quota_groups()  # of a run killed mid-measurement
        try:
            return _run_locked(s, tracker or pipeline_tracker(s.p), progress)
        finally:
            s.close()


def _run_locked(s: Session, tracker: Tracker, progress: Callable[[str], None]) -> RunResult:
    p, spec = s.p, s.p.spec
    variants = f" then {len(p.variants)} variant(s)" if p.variants else ""
    progress(f"pipeline {p.name}: {len(spec.stages)} stage(s){variants}, target {p.target.name} "
             f"({budgets_for(p.target, 'onnx').describe()})")
    parent = tracker.start_pipeline(p.name, {
        "pipeline_file": str(p.file), "target": p.target.name, "memory_mb": p.target.memory_mb,
        "architecture": p.target.architecture, "package_type": p.target.package_type,
        "vcpus": round(p.target.vcpus, 3), "eval_samples": len(s.eval_split), "stages": ",".join(p.stage_names()),
    }, {"lambdaslim.target": p.target.name})
    failed, best = True, None
    try:
        recorded: dict[str, Candidate] = {}  # plan -> candidate: what variants share is recorded once
        for chain in s.chains():
            _run_chain(s, chain, tracker, recorded, progress)
        best = select_best(s.candidates, spec.objective)
        if best is not None:
            write_best(s.run_dir, best)
        else:
            write_no_winner(s.run_dir, p.name, s.candidates)
        write_dvc_outputs(s.run_dir, p.name, s.candidates, best, parent)
        finish_run(p, s.candidates, best, tracker, progress)  # Pareto plot and table, why it won, registry
        failed = False
    finally:
        passed = [c for c in s.candidates if c.passed]
        tracker.end_pipeline({"candidates": len(s.candidates), "candidates_passed": len(passed)},
                             {"lambdaslim.selected": best.label if best else "none"}, failed)
    return RunResult(p.name, s.run_dir, s.candidates, best, parent)


def _run_chain(s: Session, chain: Chain, tracker: Tracker, recorded: dict[str, Candidate],
               progress: Callable[[str], None]) -> None:
    """Run one chain from the baseline, each step benchmarked, gated and tracked.

    In MLflow, a variant is a child run of the pipeline's parent run, and its own candidates are nested
    under it (also tagged `lambdaslim.variant`): ticking the variant runs and pressing Compare lines the
    variants up side by side, their grid values as params and their final candidate's figures as metrics,
    while the shared stages and the baseline stay single children of the parent, recorded once.
    """
    spec, v = s.p.spec, chain.variant
    tag, steps = (f"{v.name}: " if v else ""), chain.steps
    variant_run = tracker.start_variant(v.name, v.values | {"variant.stages": ",".join(st.name for st in steps[1:])},
                                        {"lambdaslim.variant": v.name}) if v else None
    artifact, key = s.baseline()
    last, failed = None, True
    try:
        for step in steps:
            t0 = time.perf_counter()
            if v is not None and step.plan in recorded:  # another variant ran it: same stages, same configs
                last = recorded[step.plan]
                artifact, key = Artifact(Path(last.path), last.format), last.stage_key
                progress(f"{tag}[{step.index + 1}/{len(steps)}] {step.name}: recorded above as {last.label}")
                continue
            progress(f"{tag}[{step.index + 1}/{len(steps)}] {step.name} ...")
            info, cached, trials = {}, False, []
            if step.cfg is not None:
                inp, inp_key = artifact, key
                artifact, key, info, cached = s.execute(step, step.cfg, inp, inp_key)
            cand = s.measure(step, artifact, key, step.cfg, info)
            cand.cached = cached
            if getattr(step.cfg, "fallback", None) is not None and not _accuracy_passed(cand):
                cand, trials = repair_accuracy(s, step, cand, inp, inp_key, s.candidates[0], spec.gates.accuracy,
                                                progress)
                artifact, key = Artifact(Path(cand.path), cand.format), cand.stage_key
            s.candidates.append(cand)
            record = write_candidate(s.run_dir, cand)
            run_id = tracker.log_candidate(cand, record, artifact.path if spec.tracking.log_models else None,
                                           parent_run_id=variant_run if step.variant else None)
            for trial in trials:
                tracker.log_candidate(trial, write_candidate(s.run_dir, trial, suffix=f"trial{trial.trial}"),
                                      None, parent_run_id=run_id)
            recorded[step.plan] = last = cand
            progress(f"{tag}[{step.index + 1}/{len(steps)}] {step.name}: {_summary(cand, s.candidates[0])} "
                     f"({time.perf_counter() - t0:.1f}s{', cached' if cand.cached else ''})")
        failed = False
    finally:
        if variant_run is not None:
            tracker.end_variant(variant_run, last, failed)


def pipeline_tracker(p: Pipeline) -> MlflowTracker:
    return open_tracker(p.root, p.spec.tracking.experiment or p.name)


def _accuracy_passed(c: Candidate) -> bool:
    return all(v.passed for v in c.gates if v.gate == "accuracy")


def write_candidate(run_dir: Path, cand: Candidate, suffix: str = "") -> Path:
    folder = run_dir / "candidates" / (cand.variant or "")  # a variant's own: its stage names recur in others
    path = folder / f"{cand.index:02d}-{cand.stage}{'-' + suffix if suffix else ''}.json"
    write_json_atomic(path, cand.to_dict())
    return path


def _summary(c: Candidate, base: Candidate) -> str:
    m = c.metrics
    drop = base.metrics["accuracy"] - m["accuracy"]
    failed = c.failed_gates()
    return (f"acc {m['accuracy']:.2f}% ({-drop:+.2f}) | {c.size_bytes / 1e6:,.1f} MB | "
            f"p50 {m['latency_p50_ms']:.2f} ms p95 {m['latency_p95_ms']:.2f} ms | "
            + ("PASS" if not failed else "FAIL " + ", ".join(v.gate for v in failed)))
