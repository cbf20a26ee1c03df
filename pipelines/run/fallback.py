"""Accuracy-aware fallback: when a quantizer's accuracy gate fails, keep its most sensitive nodes in
fp32, one more per trial, until the drop is within bounds or the trials run out.

Nodes are ranked on a split other than the evaluation split when the pipeline has one (train, then
calibration), so the gate is not tuned on the data that judges it.
"""
from __future__ import annotations

from typing import Callable

from lambdaslim.compressors.base import Artifact
from lambdaslim.records import Candidate
from lambdaslim.run.sensitivity import analyse
from lambdaslim.run.stage_bench import StageBench


def repair_accuracy(bench: StageBench, step, failed: Candidate, inp: Artifact, inp_key: str, baseline: Candidate,
                    gate, progress: Callable[[str], None]) -> tuple[Candidate, list[Candidate]]:
    """`gate` is the pipeline's accuracy gate (metric, max_drop); returns the stage's record and every trial."""
    fb = step.cfg.fallback
    target = fb.max_drop if fb.max_drop is not None else gate.max_drop
    base = baseline.metrics[gate.metric]
    ranking_name, ranking = bench.ranking_split()
    progress(f"    fallback: {step.name} drops {base - failed.metrics[gate.metric]:.2f} pt > {target} pt; "
             f"ranking nodes on the {ranking_name} split ({len(ranking)} rows)")
    rows, _ = analyse(bench, step, inp, inp_key, ranking, both_ways=False)
    excluded = list(getattr(step.cfg, "exclude_nodes", []))
    trials: list[Candidate] = []
    for t, row in enumerate(rows[: fb.max_trials], start=1):
        excluded.append(row.node)
        cfg = step.cfg.model_copy(update={"exclude_nodes": list(excluded)})
        artifact, key, info, cached = bench.execute(step, cfg, inp, inp_key)
        cand = bench.measure(step, artifact, key, cfg, info | {"fallback_trial": t, "excluded_nodes": len(excluded)})
        cand.trial, cand.cached = t, cached
        drop = base - cand.metrics[gate.metric]
        trials.append(cand)
        progress(f"    trial {t}: +fp32 {row.node} -> {gate.metric} {cand.metrics[gate.metric]:.2f} (drop {drop:.2f})")
        if drop <= target + 1e-9:
            break
    # The first trial within bounds ends the loop; when none is, the most accurate one (fewest fp32 nodes
    # on a tie) stands for the stage — an exclusion can make static quantization worse, not only better.
    best = max(trials, key=lambda c: (c.metrics[gate.metric], -c.trial)) if trials else failed
    if best.metrics[gate.metric] <= failed.metrics[gate.metric] and base - best.metrics[gate.metric] > target:
        best = failed
    final = _copy_as_result(best, failed, excluded, trials, ranking_name, target, base, gate.metric)
    return final, trials


def _copy_as_result(best: Candidate, failed: Candidate, excluded: list[str], trials: list[Candidate],
                    ranking: str, target: float, base: float, metric: str) -> Candidate:
    """The stage's own record: the chosen trial's artifact (or the unrepaired one), naming the nodes it keeps
    fp32 and each trial's score."""
    d = best.to_dict()
    kept = excluded[: best.trial] if best.trial else []
    d["trial"] = None
    d["stage_info"] = dict(best.stage_info) | {
        "fallback_excluded_nodes": kept, "fallback_chosen_trial": best.trial or 0,
        "fallback_trials": [{"trial": c.trial, "excluded": excluded[: c.trial],
                             metric: c.metrics[metric], "drop": round(base - c.metrics[metric], 4)} for c in trials],
        "fallback_target_drop": target, "fallback_ranking_split": ranking,
        "fallback_initial_" + metric: failed.metrics[metric],
    }
    return Candidate.from_dict(d)
