"""The Power Tuning cost model: formula, vCPU scaling, recommendation, table and plot."""
import csv
import math

import numpy as np
import pytest

from lambdaslim.aws import limits as L
from lambdaslim.packaging import cost

X86_MS_128 = 0.0000166667 * 128 / 1024 / 1000  # USD per ms at 128 MB
ARM_MS_128 = 0.0000133334 * 128 / 1024 / 1000
REQ = 0.20 / 1_000_000


@pytest.mark.parametrize("duration_ms, memory_mb, arch, expected", [
    (10.2, 1024, "x86_64", 11 * X86_MS_128 * 8 + REQ),  # billed ms rounds up
    (10.0, 1024, "x86_64", 10 * X86_MS_128 * 8 + REQ),  # an exact millisecond stays
    (0.3, 128, "x86_64", 1 * X86_MS_128 + REQ),  # never under 1 ms
    (99.01, 3008, "arm64", 100 * ARM_MS_128 * 3008 / 128 + REQ),
    (5, 1769, "arm64", 5 * ARM_MS_128 * 1769 / 128 + REQ),
])
def test_power_tuning_formula(duration_ms, memory_mb, arch, expected):
    assert cost.invocation_cost(duration_ms, memory_mb, arch) == pytest.approx(expected, rel=1e-12)


def test_price_per_ms_at_128mb_comes_from_lambda_limits():
    assert cost.price_per_ms_128("x86_64") == pytest.approx(L.PRICE_PER_GB_S["x86_64"] / 8000)
    assert cost.price_per_ms_128("arm64") < cost.price_per_ms_128("x86_64")


CALLS = {1: [10.0] * 10, 2: [6.0] * 10}


@pytest.mark.parametrize("memory_mb, expected_ms", [
    (L.MB_PER_VCPU, 10.0),  # one full vCPU: as measured with one thread
    (L.MB_PER_VCPU / 2, 20.0),  # half a vCPU: half a core, twice as long
    (512, 10.0 * L.MB_PER_VCPU / 512),
    (2 * L.MB_PER_VCPU, 6.0),  # two vCPUs: two threads as measured
    (1.5 * L.MB_PER_VCPU, 6.0 * 2 / 1.5),  # two threads share a quota of 1.5 cores
    (3008, 6.0 * 2 / (3008 / L.MB_PER_VCPU)),
])
def test_latency_scaled_to_the_settings_cpu_share(memory_mb, expected_ms):
    assert cost.scaled_latency(CALLS, memory_mb).mean() == pytest.approx(expected_ms)


def test_table_covers_512_to_3008_mb_for_both_architectures():
    rows = cost.cost_table(CALLS, peak_rss_mb=300, latency_gate_ms=None)
    assert {r.memory_mb for r in rows} == set(cost.MEMORY_SETTINGS_MB)
    assert min(cost.MEMORY_SETTINGS_MB) == 512 and max(cost.MEMORY_SETTINGS_MB) == 3008
    assert {r.arch for r in rows} == {"x86_64", "arm64"} and len(rows) == 2 * len(cost.MEMORY_SETTINGS_MB)
    r = next(r for r in rows if r.memory_mb == 1024 and r.arch == "x86_64")
    assert r.billed_ms == math.ceil(10 * L.MB_PER_VCPU / 1024)
    assert r.cost_per_1m_usd == pytest.approx(1e6 * cost.invocation_cost(r.duration_ms, 1024, "x86_64"))
    assert all(not r.measured for r in rows if r.arch == "arm64")


# Billed units (ms x memory/128) for CALLS: 512 MB 35x4=140, 768 24x6=144, 1024 18x8=144, 1280 14x10=140,
# 1536 12x12=144, 1769 10x13.8=138.2, 2048 11x16=176, 2560 9x20=180, 3008 8x23.5=188.
@pytest.mark.parametrize("gate, rss, expected", [
    (None, 100, 1769),
    (20.0, 100, 1769),  # 512 and 768 MB are over 20 ms, 1769 MB is cheapest of the rest anyway
    (8.5, 100, 2560),  # only 2560 (8.3 ms) and 3008 MB (7.1 ms) are under 8.5 ms
    (8.5, 2600, 3008),  # the process needs 2,600 MB: 2560 MB cannot hold it
    (1.0, 100, None),  # nothing is that fast
])
def test_recommendation_is_the_cheapest_setting_meeting_gate_and_memory(gate, rss, expected):
    rows = cost.cost_table(CALLS, peak_rss_mb=rss, latency_gate_ms=gate)
    best = cost.recommend(rows, "x86_64")
    ok = [r for r in rows if r.arch == "x86_64" and r.meets_latency and r.fits_memory]
    if expected is None:
        assert best is None and not ok
        return
    assert best.memory_mb == min(ok, key=lambda r: (round(r.cost_per_1m_usd, 6), -r.memory_mb)).memory_mb
    assert best.cost_per_1m_usd == min(r.cost_per_1m_usd for r in ok)
    assert best.memory_mb == expected


def test_ties_go_to_the_larger_faster_setting():
    # Equal cost (e.g. both bill their minimum): the larger memory is as cheap and faster.
    rows = [cost.Row(m, "x86_64", 1, 1, 1, 1, 1.0, True, True, True) for m in (512, 1024)]
    assert cost.recommend(rows, "x86_64").memory_mb == 1024


def test_csv_and_png(tmp_path):
    rows = cost.cost_table(CALLS, 100, 20.0)
    best = cost.recommend(rows, "x86_64")
    cost.write_csv(rows, tmp_path / "cost.csv")
    with open(tmp_path / "cost.csv") as f:
        table = list(csv.DictReader(f))
    assert [int(r["memory_mb"]) for r in table] == list(cost.MEMORY_SETTINGS_MB)
    assert float(table[0]["cost_arm64_per_1m_usd"]) < float(table[0]["cost_x86_64_per_1m_usd"])
    cost.plot(rows, 20.0, best, tmp_path / "cost.png", "t")
    assert (tmp_path / "cost.png").read_bytes()[:4] == b"\x89PNG"
    assert np.isfinite([r.cost_per_1m_usd for r in rows]).all()
