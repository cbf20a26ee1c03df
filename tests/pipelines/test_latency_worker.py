"""The run's latency process: under the target's CPU quota, baseline kept loaded, ended with its group."""
import os

import pytest

from lambdaslim.compressors.base import Artifact
from lambdaslim.measure import cpu_quota
from lambdaslim.measure.benchmarks import measure_latency
from lambdaslim.measure.latency_worker import LatencyWorker
from lambdaslim.testing.tiny import make_rows

REASON = cpu_quota.quota_support()
TEXTS = [t for t, _ in make_rows(20, 4)]


def _groups() -> set[str]:
    h = cpu_quota.find_hierarchy()
    return set() if isinstance(h, str) else {p.name for p in h.parent.glob("lambdaslim-*")}


@pytest.mark.skipif(REASON is not None, reason=f"no CPU quota on this host: {REASON}")
def test_a_fractional_target_is_measured_under_a_real_quota(tiny_onnx, tiny_model_dir):
    before = _groups()
    with LatencyWorker(0.5, os.cpu_count() or 1) as worker:
        during = _groups() - before
        base = Artifact(tiny_model_dir, "pytorch")
        first = measure_latency(tiny_onnx, TEXTS, 32, 1, 0.5, 20, 2, base, worker)
        second = measure_latency(tiny_onnx, TEXTS, 32, 1, 0.5, 20, 2, base, worker)  # baseline stays loaded
    assert len(during) == 1 and _groups() == before  # one group for the run, gone with it
    for m in (first, second):
        assert m["conditions"]["quota_applied"] and m["conditions"]["share"] == 0.5
        assert m["latency_estimator"] == "cfs_quota_100ms" and m["latency_runs"] == 20
        assert m["speedup_vs_baseline"] > 1  # the fp32 PyTorch model is slower than its ONNX export
        assert m["wall_p50_ms"] >= m["cpu_p50_ms"] * 0.9


def test_without_a_quota_the_record_says_so(tiny_onnx):
    m = measure_latency(tiny_onnx, TEXTS, 32, 1, float(os.cpu_count() or 1), 20, 2)
    assert not m["conditions"]["quota_applied"] and m["conditions"]["quota_reason"] == "share >= host cores"
    assert m["latency_p95_ms"] == m["cpu_p95_ms"]  # a whole CPU or more: the call's CPU time itself
