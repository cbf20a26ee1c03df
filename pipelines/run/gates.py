"""Gates: pure functions from measured figures and limits to a verdict. A failed gate is data."""
from __future__ import annotations

from lambdaslim.aws.budgets import budgets_for
from lambdaslim.records import Verdict


def ceiling_gate(gate: str, value: float, limit: float, unit: str, detail: str = "") -> Verdict:
    value, limit = round(value, 4), round(limit, 4)  # decide on what is shown, so the text never contradicts
    return Verdict(gate, value <= limit, value, limit, unit, detail)


def accuracy_gate(value: float, baseline: float, max_drop: float, relative: bool, metric: str = "accuracy") -> Verdict:
    """Degradation vs the baseline, in points (0-100 scale) or as a fraction of the baseline."""
    drop = baseline - value
    if relative:
        allowed = baseline * max_drop
        detail = f"{metric} {value:.2f} vs baseline {baseline:.2f}, at most {100 * max_drop:g}% relative drop"
    else:
        allowed = max_drop
        detail = f"{metric} {value:.2f} vs baseline {baseline:.2f}"
    return Verdict("accuracy", drop <= allowed + 1e-9, round(drop, 4), round(allowed, 4), "pt drop", detail)


def evaluate_gates(p, fmt: str, m: dict, base: dict) -> list[Verdict]:
    """Every gate of pipeline `p` for the figures `m` of a candidate in format `fmt` (the baseline's: `base`)."""
    g, budgets = p.spec.gates, budgets_for(p.target, fmt)
    verdicts = [accuracy_gate(m[g.accuracy.metric], base[g.accuracy.metric], g.accuracy.max_drop,
                              g.accuracy.relative, g.accuracy.metric)]
    if g.latency_p95_ms is not None:
        verdicts.append(ceiling_gate("latency_p95", m["latency_p95_ms"], g.latency_p95_ms, "ms",
                                     f"batch 1 at {budgets.vcpus:.2f} vCPU"))
    if g.size_mb is not None:
        verdicts.append(ceiling_gate("size", m["size_mb"], g.size_mb, "MB", "pipeline's size_mb"))
    else:
        verdicts.append(ceiling_gate("size", m["size_mb"], budgets.size_ceiling_bytes / 1e6, "MB",
                                     f"{p.target.package_type} limit {budgets.package_limit_bytes / 1e6:,.0f} MB "
                                     f"- {budgets.handler_bytes / 1e6:,.1f} MB runtime"))
    if g.memory:
        verdicts.append(ceiling_gate("memory", m["peak_rss_mb"], budgets.memory_limit_mb, "MB",
                                     "peak RSS of a fresh process"))
    return verdicts
