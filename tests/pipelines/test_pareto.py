"""The Pareto frontier over (accuracy up, p95 down, size down) and the selection's reasons, table-driven."""
import csv
import io

import pytest

from lambdaslim.records import Verdict
from lambdaslim.select.pareto import dominates, frontier, run_entries, selection_report, to_csv, to_markdown, why_not
from lambdaslim.records import Candidate
from lambdaslim.select.best import select_best


def cand(stage: str, acc: float, p95: float, mb: float, fails: str | None = None) -> Candidate:
    """A record with one p95 gate at 25 ms; `fails` names a gate that failed (by 2 units)."""
    gates = [Verdict("latency_p95", p95 <= 25, p95, 25.0, "ms")]
    if fails:
        gates.append(Verdict(fails, False, 12.0, 10.0, "MB"))
    return Candidate(stage=stage, kind=stage, index=0, path="/nowhere", format="onnx", size_bytes=int(mb * 1e6),
                     config_digest=stage, config={}, metrics={"accuracy": acc, "latency_p95_ms": p95}, gates=gates)


FRONTIER_CASES = {
    "single candidate": ([("a", 90, 10, 20)], [True]),
    "all dominated by one": ([("a", 90, 5, 10), ("b", 89, 6, 11), ("c", 90, 5, 12), ("d", 80, 9, 90)],
                             [True, False, False, False]),
    "a trade-off on every axis": ([("acc", 91, 20, 90), ("fast", 89, 5, 30), ("small", 88, 8, 10)], [True] * 3),
    "exact duplicates both stay": ([("a", 90, 5, 10), ("b", 90, 5, 10)], [True, True]),
    "tie on two axes, worse on one": ([("a", 90, 5, 10), ("b", 90, 5, 11)], [True, False]),
    "tie on accuracy only": ([("a", 90, 5, 20), ("b", 90, 7, 10)], [True, True]),
    "differences below the shown precision are ties": ([("a", 90.00001, 5, 10), ("b", 90, 5, 10)], [True, True]),
    "failed-gate candidates take part": ([("slow", 92, 40, 90), ("ok", 90, 10, 20)], [True, True]),
}


@pytest.mark.parametrize("rows,expected", FRONTIER_CASES.values(), ids=FRONTIER_CASES.keys())
def test_frontier(rows, expected):
    assert frontier([cand(*r) for r in rows]) == expected


def test_dominance_is_strict_and_one_way():
    a, b = cand("a", 90, 5, 10), cand("b", 89, 5, 10)
    assert dominates(a, b) and not dominates(b, a) and not dominates(a, a)


def test_a_failed_candidate_can_dominate_the_selected_one_and_stays_marked():
    # Better on every axis but over the memory ceiling: on the frontier, drawn as failed, never selected.
    cands = [cand("mem_hog", 91, 4, 9, fails="memory"), cand("ok", 90, 5, 10)]
    best = select_best(cands, "latency")
    rep = selection_report(run_entries("p", cands), run_entries("p", cands)[1], "latency")
    assert best is cands[1]
    rows = {r["label"]: r for r in rep["candidates"]}
    assert rows["mem_hog"]["on_frontier"] and not rows["mem_hog"]["passed"] and rows["mem_hog"]["failed_gates"] == ["memory"]
    assert rows["ok"]["selected"] and rows["ok"]["dominated_by"] == "mem_hog"
    assert rows["mem_hog"]["reason"] == "failed gate memory by 2.00 MB"


def test_exact_ties_go_to_the_more_accurate_so_the_selected_is_never_dominated_by_a_passing_one():
    cands = [cand("less", 89, 5, 10), cand("more", 90, 5, 10)]
    assert select_best(cands, "latency").stage == "more" and select_best(cands, "size").stage == "more"


REASON_CASES = {
    "slower, though more accurate": ("latency", ("w", 90, 5, 20), ("r", 91, 8, 20),
                                     "slower at p95 by 3.00 ms under objective 'latency' (though more accurate by 1.00 pt)"),
    "larger under size": ("size", ("w", 89, 8, 10), ("r", 90, 5, 20),
                          "larger by 10.00 MB under objective 'size' (though more accurate by 1.00 pt, "
                          "faster at p95 by 3.00 ms)"),
    "same p95, larger": ("latency", ("w", 90, 5, 10), ("r", 90, 5, 12),
                         "same latency_p95_ms as the winner; larger by 2.00 MB under objective 'latency'"),
    "same p95 and size, less accurate": ("latency", ("w", 90, 5, 10), ("r", 89.5, 5, 10),
                                         "same latency_p95_ms, size_mb as the winner; less accurate by 0.50 pt "
                                         "under objective 'latency'"),
    "identical": ("latency", ("w", 90, 5, 10), ("r", 90, 5, 10),
                  "tied with the winner on every figure; the winner is listed first"),
    "failed gate with margin": ("latency", ("w", 90, 5, 10), ("r", 92, 29.5, 10),
                                "failed gate latency_p95 by 4.50 ms"),
}


@pytest.mark.parametrize("objective,winner,other,expected", REASON_CASES.values(), ids=REASON_CASES.keys())
def test_why_a_candidate_did_not_win(objective, winner, other, expected):
    assert why_not(cand(*other), cand(*winner), objective) == expected


def test_report_names_the_winner_and_why_and_writes_csv_and_markdown():
    cands = [cand("baseline", 91, 30, 90), cand("export", 90, 12, 90), cand("int8", 90.2, 8, 24), cand("dup", 89, 12, 90)]
    entries = run_entries("p", cands)
    winner = entries[2]
    assert select_best(cands, "latency") is winner.cand
    rep = selection_report(entries, winner, "latency")
    assert rep["selected"] == "int8" and rep["frontier"] == ["baseline", "int8"]
    assert rep["why"].startswith("passed every gate (latency_p95 8.00/25.00 ms); best of 3 passing under "
                                 "objective 'latency' (latency_p95_ms, then size_mb, then accuracy); next: export, "
                                 "slower at p95 by 4.00 ms")
    rows = list(csv.DictReader(io.StringIO(to_csv(rep))))
    assert [r["label"] for r in rows] == ["baseline", "export", "int8", "dup"]
    assert [r["on_frontier"] for r in rows] == ["1", "0", "1", "0"] and rows[2]["selected"] == "1"
    assert rows[3]["dominated_by"] == "int8" and float(rows[2]["latency_p95_ms"]) == 8
    md = to_markdown(rep)
    assert "| **int8** (selected) |" in md and "no (dominated by int8)" in md and md.count("\n") == 6


def test_no_winner():
    cands = [cand("a", 90, 30, 10)]
    rep = selection_report(run_entries("p", cands), None, "latency")
    assert rep["selected"] is None and rep["why"] == "no candidate passed every gate"
    assert rep["candidates"][0]["reason"] == "failed gate latency_p95 by 5.00 ms"


def timed(stage: str, p95: float, mb: float, spread: float = 0.0, acc: float = 90.0) -> Candidate:
    c = cand(stage, acc, p95, mb)
    c.metrics["latency_p95_spread_ms"] = spread
    return c


TIE_CASES = {
    # (candidates, objective, winner): a p95 difference inside the noise never decides; size does.
    "0.13 ms apart at 3.6 ms is noise: the smaller wins": ([("student", 3.48, 13.3), ("pruned", 3.61, 11.9)],
                                                           "latency", "pruned"),
    "a real latency difference still decides": ([("fast", 3.0, 13.3), ("slow", 3.61, 11.9)], "latency", "fast"),
    "a wide measured spread widens the tolerance": ([("a", 3.0, 13.3, 0.7), ("b", 3.61, 11.9, 0.2)],
                                                    "latency", "b"),
    "size objective: size is exact, latency ties go to accuracy": ([("a", 3.0, 11.9), ("b", 3.1, 11.9)],
                                                                   "size", "a"),
}


@pytest.mark.parametrize("rows,objective,winner", TIE_CASES.values(), ids=TIE_CASES.keys())
def test_ties_within_noise_go_to_the_next_figure(rows, objective, winner):
    cands = [timed(*r) for r in rows]
    assert select_best(cands, objective).stage == winner


def test_the_report_says_when_latency_was_a_tie():
    cands = [timed("student", 3.48, 13.3), timed("pruned", 3.61, 11.9)]
    entries = run_entries("p", cands)
    rep = selection_report(entries, entries[1], "latency")
    rows = {r["label"]: r for r in rep["candidates"]}
    assert "latency_p95_ms tied within noise (0.13 ms apart" in rows["student"]["reason"]
    assert "larger by 1.40 MB" in rows["student"]["reason"]
    assert "next: student, latency_p95_ms tied within noise" in rep["why"]
