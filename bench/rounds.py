"""Batch-1 latency of several artifacts measured in alternating rounds, so machine noise hits them alike."""
from __future__ import annotations

import statistics

import numpy as np

from pipelines.benchmarks import batch1_feeds, time_calls
from pipelines.runtime import open_predictor


def alternating_p50(artifacts: dict, texts: list[str], max_length: int, rounds: int, calls: int,
                    threads: int = 1) -> dict[str, list[float]]:
    """Per artifact, the p50 (ms) of each round; the order of artifacts rotates every round."""
    preds = {n: open_predictor(a, threads) for n, a in artifacts.items()}
    feeds = {n: batch1_feeds(a, texts, max_length) for n, a in artifacts.items()}
    for n in artifacts:  # warm-up
        time_calls(preds[n], feeds[n], 30)
    p50 = {n: [] for n in artifacts}
    names = list(artifacts)
    for r in range(rounds):
        for n in names[r % len(names):] + names[: r % len(names)]:
            p50[n].append(float(np.median(time_calls(preds[n], feeds[n], calls, offset=r * calls))))
    return p50


def median_ratio(p50: dict[str, list[float]], slow: str, fast: str) -> float:
    """Median over rounds of slow/fast: each ratio compares two measurements taken moments apart."""
    return statistics.median(a / b for a, b in zip(p50[slow], p50[fast]))
