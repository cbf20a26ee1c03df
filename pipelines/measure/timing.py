"""Per-call wall and CPU time, interleaved A/B rounds, and a latency estimate that holds under load.

Wall time of a call doubles when another job competes for the host's cores; the CPU time the call
itself consumed barely moves. The gated latency is therefore derived from CPU time and the target's
CPU share (a CFS quota model for one thread), with wall time reported next to it. numpy + stdlib.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

CLOCKS = {"thread": time.thread_time_ns, "process": time.process_time_ns}


@dataclass
class CallTimes:
    wall_ms: np.ndarray
    cpu_ms: np.ndarray
    cpu_clock: str = "thread"  # thread CPU misses work done by pool threads: summarize() checks it
    round_index: np.ndarray | None = None  # per call, from interleaved_rounds(); None otherwise

    def round_medians(self, which: str = "cpu_ms") -> np.ndarray:
        """Median of `which` ("cpu_ms" or "wall_ms") per interleaved round, in round order."""
        if self.round_index is None:
            raise ValueError("round_medians needs CallTimes from interleaved_rounds()")
        values = getattr(self, which)
        return np.array([np.median(values[self.round_index == r]) for r in np.unique(self.round_index)])


def _feed(feeds, i: int):
    # one feed dict serves every call; a sequence is cycled through
    return feeds if isinstance(feeds, Mapping) else feeds[i % len(feeds)]


def time_calls(predict: Callable, feeds, runs: int, warmup: int = 0, offset: int = 0,
               cpu_clock: str = "thread", gap_s: float = 0.0) -> CallTimes:
    """Wall (perf_counter) and CPU time in ms of `runs` calls on feeds[offset:], after `warmup`
    untimed calls. cpu_clock "thread": the calling thread only (ONNX Runtime with one intra-op
    thread runs there); "process": all threads, for multi-threaded pools."""
    if cpu_clock not in CLOCKS:
        raise ValueError(f"cpu_clock must be one of {sorted(CLOCKS)}, got {cpu_clock!r}")
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    cpu_now = CLOCKS[cpu_clock]
    for i in range(warmup):
        predict(_feed(feeds, offset + i))
    wall, cpu = np.empty(runs), np.empty(runs)
    for i in range(runs):
        f = _feed(feeds, offset + i)
        if gap_s:  # idle between requests, as a Lambda environment is: a CPU quota refills meanwhile
            time.sleep(gap_s)
        w0, c0 = time.perf_counter_ns(), cpu_now()
        predict(f)
        c1, w1 = cpu_now(), time.perf_counter_ns()
        wall[i], cpu[i] = w1 - w0, c1 - c0
    return CallTimes(wall / 1e6, cpu / 1e6, cpu_clock)


def round_order(names: Sequence[str], r: int) -> list[str]:
    """Round r runs the names forward when r is even, reversed when odd: A B | B A | A B ..."""
    return list(names) if r % 2 == 0 else list(reversed(names))


def interleaved_rounds(predictors: dict[str, Callable], feeds, rounds: int, calls_per_round: int,
                       warmup: int = 0, cpu_clock: str = "thread", gap_s: float = 0.0) -> dict[str, CallTimes]:
    """Alternate the predictors round by round so each variant sees the same host conditions (and,
    in round r, the same feeds). Each name's calls are concatenated; `round_index` tags each call
    with its round, so `CallTimes.round_medians()` feeds `median_ratio()`."""
    names = list(predictors)
    for name in names:  # warm every variant before round 0 so no round pays for a first call
        for i in range(warmup):
            predictors[name](_feed(feeds, i))
    parts: dict[str, list[CallTimes]] = {n: [] for n in names}
    for r in range(rounds):
        for name in round_order(names, r):
            parts[name].append(time_calls(predictors[name], feeds, calls_per_round,
                                          offset=r * calls_per_round, cpu_clock=cpu_clock, gap_s=gap_s))
    idx = np.repeat(np.arange(rounds), calls_per_round)
    return {n: CallTimes(np.concatenate([p.wall_ms for p in ps]), np.concatenate([p.cpu_ms for p in ps]),
                         cpu_clock, idx) for n, ps in parts.items()}


def median_ratio(a_rounds: np.ndarray, b_rounds: np.ndarray) -> float:
    """Median over rounds of a/b: a slow round (host busy) slows both, so it cancels per round."""
    a, b = np.asarray(a_rounds, float), np.asarray(b_rounds, float)
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"need equal, non-empty per-round arrays, got {a.shape} and {b.shape}")
    if np.any(b <= 0):
        raise ValueError("b_rounds must be > 0")
    return float(np.median(a / b))


def cfs_wall_ms(cpu_ms: np.ndarray, share: float, period_ms: float = 100.0) -> np.ndarray:
    """Wall time of a single-threaded call of `cpu_ms` CPU under a CFS bandwidth quota of `share`
    CPUs, i.e. share*period_ms of CPU per period_ms.

    Assumes the call starts at the beginning of a fresh period with its quota unused: calls arrive
    with idle gaps (one request at a time per Lambda environment), so the quota has refilled. A call
    within the quota then runs at full speed; each quota it exhausts costs the rest of that period
    (period - quota) of throttling. Starting mid-period can only shorten the first throttle, so
    this is an upper bound given a full quota. Back-to-back calls that use more than `share` on
    average are throttled more often than this says. Linux's default period is 100 ms; AWS does
    not publish Lambda's. share >= 1: identity (one thread cannot use more than one CPU).
    """
    cpu = np.asarray(cpu_ms, float)
    if share <= 0 or period_ms <= 0:
        raise ValueError(f"share and period_ms must be > 0, got {share}, {period_ms}")
    if share >= 1:
        return cpu.copy()
    quota = share * period_ms
    # quotas used up before the call finishes; the tolerance keeps an exact multiple from rounding up
    exhausted = np.maximum(np.ceil(cpu / quota - 1e-9) - 1, 0)
    return cpu + exhausted * (period_ms - quota)


def _pcts(prefix: str, ms: np.ndarray) -> dict[str, float]:
    out = {f"{prefix}_p{q}_ms": round(float(np.percentile(ms, q)), 4) for q in (50, 95, 99)}
    out[f"{prefix}_mean_ms"] = round(float(np.mean(ms)), 4)
    return out


def _latency(times: CallTimes, share: float, threads: int, multiplier_fallback: bool):
    """The gated per-call estimate and the name of the method that made it."""
    if threads > 1:
        if times.cpu_clock != "process":
            raise ValueError("threads > 1 needs cpu_clock='process' (thread time misses the pool)")
        # perfect scaling of the intra-op pool: cpu/threads wall on `threads` cores, stretched by
        # threads/share when the quota grants fewer CPUs than threads (never more than threads)
        return times.cpu_ms / threads * threads / min(share, threads), "process_cpu_over_share"
    if multiplier_fallback:
        return times.cpu_ms * math.ceil(share) / share, "cpu_times_ceil_share_over_share"
    return cfs_wall_ms(times.cpu_ms, share), "cfs_quota_100ms"


def latency_series(times: CallTimes, share: float, threads: int, multiplier_fallback: bool = False) -> np.ndarray:
    """The gated estimate of every call, in ms."""
    return _latency(times, share, threads, multiplier_fallback)[0]


def summarize(times: CallTimes, share: float, threads: int, multiplier_fallback: bool = False) -> dict:
    """p50/p95/p99/mean of cpu, wall and the gated `latency` estimate (ms, 4 decimals)."""
    if share <= 0 or threads < 1:
        raise ValueError(f"need share > 0 and threads >= 1, got {share}, {threads}")
    latency, estimator = _latency(times, share, threads, multiplier_fallback)
    out = {**_pcts("cpu", times.cpu_ms), **_pcts("wall", times.wall_ms), **_pcts("latency", latency)}
    out["latency_estimator"] = estimator
    out["latency_runs"] = int(times.cpu_ms.size)
    return out
