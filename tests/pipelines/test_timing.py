"""Per-call CPU vs wall timing, interleaved rounds, the CFS quota model and the summary it gates on."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from lambdaslim.measure import timing

FEED = {"input_ids": np.zeros((1, 8), dtype=np.int64)}


def burn(seconds: float) -> None:
    c0 = time.thread_time()
    while time.thread_time() - c0 < seconds:
        pass


@pytest.mark.parametrize("cpu_ms, share, period_ms, wall_ms", [
    (3.0, 0.29, 100.0, 3.0),  # a short call fits in one period's quota: full speed
    (29.0, 0.29, 100.0, 29.0),  # exactly the quota: no throttle
    (50.0, 0.29, 100.0, 50.0 + 71.0),  # one exhausted quota costs the other 71 ms of the period
    (58.0, 0.29, 100.0, 58.0 + 71.0),  # two full quotas: throttled once, done at the second's end
    (100.0, 0.29, 100.0, 100.0 + 3 * 71.0),
    (300.0, 0.25, 100.0, 300.0 + 11 * 75.0),
    (12.0, 0.5, 20.0, 12.0 + 10.0),  # a shorter period
    (200.0, 1.0, 100.0, 200.0),  # share >= 1: identity
    (200.0, 2.0, 100.0, 200.0),
])
def test_cfs_wall_ms(cpu_ms, share, period_ms, wall_ms):
    assert timing.cfs_wall_ms(np.array([cpu_ms]), share, period_ms)[0] == pytest.approx(wall_ms)


def test_cfs_wall_ms_is_vectorized_and_rejects_bad_shares():
    out = timing.cfs_wall_ms(np.array([1.0, 30.0, 60.0]), 0.29)
    assert out == pytest.approx([1.0, 101.0, 60.0 + 2 * 71.0])
    with pytest.raises(ValueError):
        timing.cfs_wall_ms(np.array([1.0]), 0.0)


def test_sleep_costs_wall_not_cpu():
    t = timing.time_calls(lambda f: time.sleep(0.02), FEED, runs=3, warmup=1)
    assert t.cpu_ms.shape == t.wall_ms.shape == (3,)
    assert np.all(t.wall_ms >= 19.5) and np.all(t.cpu_ms < 3.0)


def test_busy_call_costs_cpu_close_to_wall():
    t = timing.time_calls(lambda f: burn(0.02), [FEED, FEED], runs=3)
    assert np.all(t.cpu_ms >= 19.5) and np.all(t.wall_ms >= t.cpu_ms - 0.5)


def test_thread_clock_misses_pool_threads_process_clock_sees_them():
    def pooled(f):  # the work happens on another thread, as in a multi-threaded intra-op pool
        worker = threading.Thread(target=burn, args=(0.02,))
        worker.start()
        worker.join()

    thread = timing.time_calls(pooled, FEED, runs=2, cpu_clock="thread")
    process = timing.time_calls(pooled, FEED, runs=2, cpu_clock="process")
    assert np.all(thread.cpu_ms < 3.0) and np.all(process.cpu_ms >= 19.5)
    assert process.cpu_clock == "process"
    with pytest.raises(ValueError):
        timing.time_calls(pooled, FEED, runs=1, cpu_clock="wall")


def test_time_calls_cycles_feeds_from_offset():
    seen = []
    timing.time_calls(seen.append, [0, 1, 2], runs=4, warmup=2, offset=1)
    assert seen == [1, 2, 1, 2, 0, 1]  # warmup on feeds[1:3], then four timed calls from feeds[1]


def test_interleaved_rounds_flip_the_order_every_round():
    calls = []
    predictors = {name: (lambda f, name=name: calls.append((name, f))) for name in ("A", "B")}
    out = timing.interleaved_rounds(predictors, [0, 1, 2, 3, 4, 5], rounds=3, calls_per_round=2, warmup=1)
    assert [n for n, _ in calls] == ["A", "B"] + ["A", "A", "B", "B"] + ["B", "B", "A", "A"] + ["A", "A", "B", "B"]
    # round r hands both variants the same feeds
    assert [f for n, f in calls[2:] if n == "A"] == [f for n, f in calls[2:] if n == "B"] == [0, 1, 2, 3, 4, 5]
    assert set(out) == {"A", "B"}
    assert out["A"].cpu_ms.shape == (6,) and list(out["A"].round_index) == [0, 0, 1, 1, 2, 2]
    assert out["B"].round_medians("wall_ms").shape == (3,)


def test_round_order_for_more_than_two():
    assert timing.round_order(["A", "B", "C"], 0) == ["A", "B", "C"]
    assert timing.round_order(["A", "B", "C"], 1) == ["C", "B", "A"]


def test_median_ratio_cancels_a_slow_round():
    base = np.array([10.0, 10.0, 40.0, 10.0, 10.0])  # round 3: the host was busy for both
    cand = np.array([5.0, 5.0, 20.0, 5.0, 4.0])
    assert timing.median_ratio(base, cand) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        timing.median_ratio(base, cand[:3])
    with pytest.raises(ValueError):
        timing.median_ratio(base, np.zeros(5))


def test_round_medians_need_rounds():
    with pytest.raises(ValueError):
        timing.CallTimes(np.ones(2), np.ones(2)).round_medians()


def test_summarize_single_thread_uses_the_cfs_model():
    t = timing.CallTimes(wall_ms=np.array([4.0, 6.0, 80.0]), cpu_ms=np.array([3.0, 3.0, 50.0]))
    s = timing.summarize(t, share=0.29, threads=1, multiplier_fallback=False)
    assert s["latency_estimator"] == "cfs_quota_100ms" and s["latency_runs"] == 3
    assert s["latency_p50_ms"] == 3.0 and s["latency_mean_ms"] == round((3 + 3 + 121) / 3, 4)
    assert s["cpu_p50_ms"] == 3.0 and s["wall_p50_ms"] == 6.0
    expected = {f"{k}_{p}_ms" for k in ("cpu", "wall", "latency") for p in ("p50", "p95", "p99", "mean")}
    assert expected | {"latency_estimator", "latency_runs"} == set(s)


def test_summarize_multiplier_fallback_and_threads():
    t = timing.CallTimes(wall_ms=np.array([4.0]), cpu_ms=np.array([2.9]))
    s = timing.summarize(t, share=0.29, threads=1, multiplier_fallback=True)
    assert s["latency_p50_ms"] == pytest.approx(10.0) and s["latency_estimator"].startswith("cpu_times")
    pooled = timing.CallTimes(wall_ms=np.array([6.0]), cpu_ms=np.array([12.0]), cpu_clock="process")
    s2 = timing.summarize(pooled, share=1.5, threads=2, multiplier_fallback=False)
    assert s2["latency_p50_ms"] == pytest.approx(8.0)  # 12/2 ms on two cores, x 2/1.5 for the quota
    assert timing.summarize(pooled, share=4.0, threads=2)["latency_p50_ms"] == pytest.approx(6.0)
    with pytest.raises(ValueError, match="cpu_clock='process'"):
        timing.summarize(timing.CallTimes(np.ones(1), np.ones(1)), share=1.5, threads=2)
    assert round(1 / 3, 4) == timing.summarize(timing.CallTimes(np.ones(1), np.array([1 / 3])), 1.0, 1)["cpu_p50_ms"]
