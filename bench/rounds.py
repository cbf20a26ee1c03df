"""Batch-1 latency of several artifacts measured in alternating rounds, so machine noise hits them alike.

Figures are per-call CPU time of the calling thread (one intra-op thread), the figure lambdaslim gates on;
`figure="wall_ms"` gives wall time instead.
"""
from __future__ import annotations

import statistics

import numpy as np

from lambdaslim.measure.latency_probe import batch1_feeds
from lambdaslim.measure.predictors import open_predictor
from lambdaslim.measure.timing import round_order, time_calls


def alternating_p50(artifacts: dict, texts: list[str], max_length: int, rounds: int, calls: int,
                    threads: int = 1, figure: str = "cpu_ms") -> dict[str, list[float]]:
    """Per artifact, the p50 (ms) of each round; the order of artifacts flips every round."""
    preds = {n: open_predictor(a, threads) for n, a in artifacts.items()}
    feeds = {n: batch1_feeds(a, texts, max_length) for n, a in artifacts.items()}
    clock = "thread" if threads == 1 else "process"
    for n in artifacts:  # warm-up
        time_calls(preds[n], feeds[n], 30, cpu_clock=clock)
    p50 = {n: [] for n in artifacts}
    for r in range(rounds):
        for n in round_order(list(artifacts), r):
            t = time_calls(preds[n], feeds[n], calls, offset=r * calls, cpu_clock=clock)
            p50[n].append(float(np.median(getattr(t, figure))))
    return p50


def median_ratio(p50: dict[str, list[float]], slow: str, fast: str) -> float:
    """Median over rounds of slow/fast: each ratio compares two measurements taken moments apart."""
    return statistics.median(a / b for a, b in zip(p50[slow], p50[fast]))
