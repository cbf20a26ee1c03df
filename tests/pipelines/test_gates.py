"""Gates are pure: measured figures and limits in, a verdict out."""
from __future__ import annotations

import json

import pytest

from lambdaslim.records import Verdict
from lambdaslim.run.gates import accuracy_gate, ceiling_gate


@pytest.mark.parametrize("value, baseline, max_drop, relative, passed, drop, allowed", [
    # Absolute: max_drop is in points (0-100).
    (89.5, 90.0, 1.0, False, True, 0.5, 1.0),
    (89.0, 90.0, 1.0, False, True, 1.0, 1.0),  # exactly at the boundary passes
    (90.1, 91.1, 1.0, False, True, 1.0, 1.0),  # ... also when the subtraction carries float noise
    (88.9, 90.0, 1.0, False, False, 1.1, 1.0),
    (89.99, 90.0, 0.0, False, False, 0.01, 0.0),
    (90.0, 90.0, 0.0, False, True, 0.0, 0.0),
    (91.0, 90.0, 0.0, False, True, -1.0, 0.0),  # an improvement passes even with no allowed drop
    # Relative: max_drop is a fraction of the baseline.
    (89.2, 90.0, 0.01, True, True, 0.8, 0.9),
    (89.1, 90.0, 0.01, True, True, 0.9, 0.9),  # boundary
    (89.0, 90.0, 0.01, True, False, 1.0, 0.9),
    (80.0, 50.0, 0.02, True, True, -30.0, 1.0),  # improvement
    (49.0, 50.0, 0.02, True, True, 1.0, 1.0),
    (48.9, 50.0, 0.02, True, False, 1.1, 1.0),
])
def test_accuracy_gate(value, baseline, max_drop, relative, passed, drop, allowed):
    v = accuracy_gate(value, baseline, max_drop, relative)
    assert (v.gate, v.unit) == ("accuracy", "pt drop")
    assert v.passed is passed
    assert v.value == pytest.approx(drop, abs=1e-4)
    assert v.limit == pytest.approx(allowed, abs=1e-4)
    assert (v.margin >= 0) is passed
    assert ("relative drop" in v.detail) is relative


def test_accuracy_gate_names_the_metric():
    v = accuracy_gate(70.0, 72.5, 0.05, True, metric="macro_f1")
    assert v.detail == "macro_f1 70.00 vs baseline 72.50, at most 5% relative drop"
    assert accuracy_gate(70.0, 72.5, 3.0, False).detail == "accuracy 70.00 vs baseline 72.50"


@pytest.mark.parametrize("value, limit, passed, margin", [
    (90.0, 100.0, True, 10.0),  # below
    (100.0, 100.0, True, 0.0),  # at
    (100.5, 100.0, False, -0.5),  # above
    (0.0, 0.0, True, 0.0),
    (1.23456789, 2.0, True, 0.7654),  # stored rounded to 4 places
])
def test_ceiling_gate(value, limit, passed, margin):
    v = ceiling_gate("size", value, limit, "MB", "model.onnx")
    assert (v.gate, v.unit, v.detail) == ("size", "MB", "model.onnx")
    assert v.passed is passed
    assert v.value == round(value, 4) and v.limit == round(limit, 4)
    assert v.margin == pytest.approx(margin, abs=1e-9)


@pytest.mark.parametrize("verdict, text", [
    (Verdict("latency_p95", True, 18.25, 25.0, "ms"), "latency_p95: 18.25 ms <= 25.00 ms"),
    (Verdict("latency_p95", False, 31.5, 25.0, "ms"), "latency_p95: 31.50 ms > 25.00 ms (over by 6.50 ms)"),
    (Verdict("size", False, 1234.5, 104.8, "MB", "model.onnx"),
     "size: 1,234.50 MB > 104.80 MB (over by 1,129.70 MB); model.onnx"),
    (Verdict("memory", True, 1769.0, 1769.0, "MB", "peak RSS"), "memory: 1,769.00 MB <= 1,769.00 MB; peak RSS"),
])
def test_describe(verdict, text):
    assert verdict.describe() == text
    assert ("over by" in verdict.describe()) is (not verdict.passed)


@pytest.mark.parametrize("value, limit, sign", [(5.0, 10.0, 1), (10.0, 10.0, 0), (12.0, 10.0, -1)])
def test_margin_sign(value, limit, sign):
    v = ceiling_gate("latency_p95", value, limit, "ms")
    assert (v.margin > 0) - (v.margin < 0) == sign
    assert v.passed is (sign >= 0)


@pytest.mark.parametrize("verdict", [
    ceiling_gate("size", 104.123456, 100.0, "MB", "model.onnx"),
    ceiling_gate("memory", 512.0, 1769.0, "MB"),
    accuracy_gate(89.1, 90.0, 0.01, True),
    accuracy_gate(91.0, 90.0, 1.0, False, metric="macro_f1"),
])
def test_to_dict_round_trip(verdict):
    d = verdict.to_dict()
    assert d["margin"] == round(verdict.margin, 4)
    assert set(d) == {"gate", "passed", "value", "limit", "unit", "detail", "margin"}
    assert Verdict.from_dict(d) == verdict
    assert Verdict.from_dict(json.loads(json.dumps(d))) == verdict
