"""The candidate table printed after a run and by `lambdaslim report RUN_DIR`."""
from __future__ import annotations

from lambdaslim.records import Candidate


def _fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def candidate_table(cands: list[Candidate], best: str | None = None) -> str:
    base = next((c for c in cands if c.kind == "baseline"), None)
    base_p50 = base.metrics.get("latency_p50_ms") if base else None
    rows = [("#", "stage", "format", "acc %", "drop pt", "size MB", "p50 ms", "p95 ms", "speed-up", "RSS MB", "gates")]
    for c in cands:  # a variant's own candidate is shown as variant/stage
        m = c.metrics
        drop = (base.metrics["accuracy"] - m["accuracy"]) if base and "accuracy" in m else None
        # measured against the baseline in interleaved rounds when it was; else the ratio of two p50s
        speed = m.get("speedup_vs_baseline") or (base_p50 / m["latency_p50_ms"] if base_p50 and m.get("latency_p50_ms")
                                                 else None)
        failed = c.failed_gates()
        verdict = "PASS" if not failed else "FAIL " + "; ".join(v.describe() for v in failed)
        mark = "*" if c.label == best else ""
        rows.append((f"{c.index}{mark}", c.label, c.format, _fmt(m.get("accuracy"), ".2f"), _fmt(drop, "+.2f"),
                     _fmt(c.size_bytes / 1e6, ",.1f"), _fmt(m.get("latency_p50_ms"), ".2f"),
                     _fmt(m.get("latency_p95_ms"), ".2f"), _fmt(speed, ".2f") + ("x" if speed else ""),
                     _fmt(m.get("peak_rss_mb"), ",.0f"), verdict))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r[:-1], widths)) + "  " + r[-1] for r in rows]
    lines.insert(1, "-" * max(len(line) for line in lines[:1]))
    if best:
        lines.append("* selected")
    return "\n".join(lines)
