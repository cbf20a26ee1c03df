"""The Pareto frontier of candidates over (accuracy up, p95 latency down, size down), and why each one lost.

Pure functions over candidate records. Every candidate takes part in the frontier, those that failed a gate
too: the frontier shows the trade-offs that were measured, including the ones the gates cut off (the PyTorch
baseline is often the most accurate and the largest). A failed candidate on the frontier is drawn with an x,
its row names the gate it failed and by how much, and it is never selected. Two candidates with the same
figures do not dominate each other, so both stay on the frontier.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from lambdaslim.records import Candidate
from lambdaslim.select.figures import ACCURACY, OBJECTIVE_FIGURES, P95, SIZE, Figure, rank

AXES = (ACCURACY, P95, SIZE)
CSV_COLUMNS = ("label", "pipeline", "stage", "format", "accuracy", "latency_p95_ms", "size_mb", "passed",
               "on_frontier", "selected", "dominated_by", "reason")


@dataclass(frozen=True)
class Entry:
    """One candidate as a point: `label` names it in plots and tables (`stage`, or `pipeline/stage` across runs)."""

    label: str
    pipeline: str
    cand: Candidate


def run_entries(pipeline: str, cands: list[Candidate], qualify: bool = False) -> list[Entry]:
    return [Entry(f"{pipeline}/{candidate_label(c)}" if qualify else candidate_label(c), pipeline, c) for c in cands]


def candidate_label(c: Candidate) -> str:
    return getattr(c, "label", None) or c.stage  # `variant/stage` when the pipeline has variants


def dominates(a: Candidate, b: Candidate) -> bool:
    """`a` is at least as good as `b` on every axis and better on one."""
    ca, cb = [f.cost(a) for f in AXES], [f.cost(b) for f in AXES]
    return ca != cb and all(x <= y for x, y in zip(ca, cb))


def frontier(cands: list[Candidate]) -> list[bool]:
    return [not any(dominates(o, c) for o in cands) for c in cands]


def dominator(cands: list[Candidate], i: int) -> int | None:
    """The first frontier candidate that dominates cands[i] (one always does when cands[i] is off the frontier)."""
    front = frontier(cands)
    return next((j for j, c in enumerate(cands) if front[j] and dominates(c, cands[i])), None)


def _amount(x: float) -> str:
    return f"{x:,.2f}" if abs(x) >= 0.01 else f"{x:.2g}"


def _diff(f: Figure, a: Candidate, b: Candidate) -> float:
    """How much worse `a` is than `b` on `f`, in f's unit (negative: better)."""
    return round(f.cost(a) - f.cost(b), f.digits)


def _decider(a: Candidate, b: Candidate, objective: str) -> Figure | None:
    """The first figure of the objective's order on which a and b differ by more than their noise."""
    return next((f for f in OBJECTIVE_FIGURES[objective] if _diff(f, a, b) != 0 and not f.tied(a, b)), None)


def _undecided(figs, a: Candidate, b: Candidate) -> str:
    """How two candidates compare on the figures that did not decide: the same, or tied within noise."""
    same = [f.name for f in figs if _diff(f, a, b) == 0]
    ties = [f"{f.name} tied within noise ({_amount(abs(_diff(f, a, b)))} {f.unit} apart, tolerance "
            f"{_amount(f.tolerance(a, b))} {f.unit})" for f in figs if _diff(f, a, b) != 0]
    return "; ".join(([f"same {', '.join(same)} as the winner"] if same else []) + ties)


def failed_text(c: Candidate) -> str:
    return "failed gate " + "; ".join(f"{v.gate} by {_amount(-v.margin)} {v.unit}" for v in c.failed_gates())


def why_not(c: Candidate, winner: Candidate | None, objective: str) -> str:
    """Why `c` was not selected: the gate it failed, or the figure on which the winner beat it."""
    if not c.passed:
        return failed_text(c)
    if winner is None:
        return "no winner"
    figs = OBJECTIVE_FIGURES[objective]
    f = _decider(c, winner, objective)
    if f is None:
        return "tied with the winner on every figure; the winner is listed first"
    undecided = _undecided(figs[: figs.index(f)], c, winner)
    text = (f"{undecided}; " if undecided else "") + \
        f"{f.worse} by {_amount(_diff(f, c, winner))} {f.unit} under objective '{objective}'"
    gains = [f"{g.better} by {_amount(-_diff(g, c, winner))} {g.unit}" for g in AXES if _diff(g, c, winner) < 0]
    return text + (f" (though {', '.join(gains)})" if gains else "")


def why_won(winner: Entry, entries: list[Entry], objective: str) -> str:
    figs, w = OBJECTIVE_FIGURES[objective], winner.cand
    passed = [e for e in entries if e.cand.passed]
    gates = ", ".join(f"{v.gate} {_amount(v.value)}/{_amount(v.limit)} {v.unit}" for v in w.gates)
    order = ", then ".join(f.name for f in figs)
    text = f"passed every gate ({gates}); best of {len(passed)} passing under objective '{objective}' ({order})"
    ranked = rank([e.cand for e in passed if e is not winner], objective)
    rivals = [next(e for e in passed if e.cand is c) for c in ranked]
    if rivals:
        r = rivals[0].cand
        f = _decider(r, w, objective)
        undecided = _undecided(figs[: figs.index(f)], r, w) if f else ""
        text += f"; next: {rivals[0].label}, " + (f"{undecided}; " if undecided else "") + (
            f"{f.worse} by {_amount(_diff(f, r, w))} {f.unit}" if f else "tied on every figure")
    return text


def selection_report(entries: list[Entry], winner: Entry | None, objective: str) -> dict:
    """Why the winner won and, for every other candidate, why not; which ones are on the frontier."""
    cands = [e.cand for e in entries]
    front = frontier(cands)
    # The winner itself (an equal entry, duplicates being possible, only when it is not in the list as such).
    win = next((i for i, e in enumerate(entries) if e is winner), None)
    win = entries.index(winner) if winner is not None and win is None else win
    rows = []
    for i, e in enumerate(entries):
        c, m = e.cand, e.cand.metrics
        dom = None if front[i] else dominator(cands, i)
        selected = i == win
        rows.append({
            "label": e.label, "pipeline": e.pipeline, "stage": c.stage, "format": c.format,
            "accuracy": m["accuracy"], "latency_p95_ms": m["latency_p95_ms"], "size_mb": round(c.size_bytes / 1e6, 3),
            "passed": c.passed, "failed_gates": [v.gate for v in c.failed_gates()], "on_frontier": front[i],
            "selected": selected, "dominated_by": entries[dom].label if dom is not None else None,
            "reason": why_won(e, entries, objective) if selected else why_not(c, winner and winner.cand, objective),
        })
    return {"objective": objective, "order": [f.name for f in OBJECTIVE_FIGURES[objective]],
            "selected": winner.label if winner else None,
            "why": next(r["reason"] for r in rows if r["selected"]) if winner else "no candidate passed every gate",
            "frontier": [r["label"] for r in rows if r["on_frontier"]], "candidates": rows}


def to_csv(report: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in report["candidates"]:
        w.writerow([int(r[k]) if isinstance(r[k], bool) else ("" if r[k] is None else r[k]) for k in CSV_COLUMNS])
    return buf.getvalue()


def to_markdown(report: dict) -> str:
    lines = ["| candidate | accuracy % | p95 ms | size MB | gates | frontier | why |", "|---|---|---|---|---|---|---|"]
    for r in report["candidates"]:
        name = f"**{r['label']}** (selected)" if r["selected"] else r["label"]
        gates = "pass" if r["passed"] else "fail: " + ", ".join(r["failed_gates"])
        front = "yes" if r["on_frontier"] else f"no (dominated by {r['dominated_by']})"
        lines.append(f"| {name} | {r['accuracy']:.2f} | {r['latency_p95_ms']:.2f} | {r['size_mb']:,.1f} | {gates} "
                     f"| {front} | {r['reason'].replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def describe(report: dict) -> list[str]:
    """Lines for `lambdaslim report`: the winner and why, then every other candidate and why not."""
    order = ", then ".join(report["order"])
    lines = [f"selection (objective '{report['objective']}': {order}; frontier over accuracy, p95, size):"]
    for r in sorted(report["candidates"], key=lambda r: (not r["selected"], not r["on_frontier"])):
        mark = "*" if r["selected"] else " "
        where = "frontier" if r["on_frontier"] else f"dominated by {r['dominated_by']}"
        lines.append(f"  {mark} {r['label']} [{where}]: {r['reason']}")
    if report["selected"] is None:
        lines.append("  no candidate passed every gate")
    return lines
