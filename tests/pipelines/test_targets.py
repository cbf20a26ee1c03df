"""Lambda targets: vCPUs from memory, the thread plan for measuring latency, and the size budgets."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from lambdaslim.aws import limits as L
from lambdaslim.aws import budgets as B
from lambdaslim.aws.budgets import Budgets, budgets_for, thread_plan
from lambdaslim.aws.targets import LambdaTarget
from lambdaslim.packaging.closure import handler_bytes

REPO_TARGETS = sorted((Path(__file__).parent.parent.parent / "configs" / "targets").glob("*.yaml"))


def target(memory_mb: int, package_type: str = "zip", **kw) -> LambdaTarget:
    return LambdaTarget(name=f"t{memory_mb}", memory_mb=memory_mb, package_type=package_type, **kw)


@pytest.mark.parametrize("memory_mb, vcpus", [
    (128, 0.0724),  # the minimum: under a tenth of a core
    (512, 0.2894),
    (1769, 1.0),  # one full vCPU
    (3008, 1.7004),
    (3538, 2.0),
    (10240, 5.7886),  # the maximum memory; 6 cores visible (ceil), a 5.79-vCPU quota
])
def test_vcpus_are_proportional_to_memory(memory_mb, vcpus):
    assert target(memory_mb).vcpus == pytest.approx(vcpus, abs=1e-4)
    assert target(memory_mb).vcpus <= L.VCPU_MAX


@pytest.mark.parametrize("memory_mb", [20_000, 100_000])
def test_vcpus_are_capped_at_six(memory_mb):
    # Past the validated range, only to show the cap: model_construct skips validation.
    assert LambdaTarget.model_construct(name="big", memory_mb=memory_mb).vcpus == 6


@pytest.mark.parametrize("vcpus, host, threads, scale", [
    # Below one vCPU: one thread, and the call owns only a fraction of a core.
    (0.5, 4, 1, 2.0),
    (512 / 1769, 4, 1, 1769 / 512),
    (128 / 1769, 4, 1, 1769 / 128),
    (1.0, 4, 1, 1.0),
    (1.0 + 1e-12, 4, 1, 1.0),  # float noise does not buy a second thread
    # Between one and two: two cores share the quota.
    (1.5, 4, 2, 2 / 1.5),
    (3008 / 1769, 4, 2, 2 / (3008 / 1769)),
    (2.0, 4, 2, 1.0),
    (2.5, 8, 3, 3 / 2.5),
    (10240 / 1769, 16, 6, 6 / (10240 / 1769)),
    # Host-core capping: never more threads than the host has; the scale stays the target's.
    (3008 / 1769, 1, 1, 2 / (3008 / 1769)),
    (10240 / 1769, 4, 4, 6 / (10240 / 1769)),
    (4.0, 2, 2, 1.0),
    (0.5, 1, 1, 2.0),
])
def test_thread_plan(vcpus, host, threads, scale):
    got_threads, got_scale = thread_plan(vcpus, host)
    assert got_threads == threads
    assert got_scale == pytest.approx(scale, rel=1e-9)


@pytest.mark.parametrize("cpu_count, threads", [(1, 1), (2, 2), (64, 4), (None, 1)])
def test_thread_plan_defaults_to_this_hosts_cores(monkeypatch, cpu_count, threads):
    monkeypatch.setattr(B.os, "cpu_count", lambda: cpu_count)
    assert thread_plan(4.0) == (threads, 1.0)


ZIP_LIMIT = 250 * 1_000_000
CONTAINER_LIMIT = (10_240 - 600) * 1_000_000


@pytest.mark.parametrize("memory_mb, package_type, arch, limit", [
    (1769, "zip", "x86_64", ZIP_LIMIT),
    (512, "zip", "x86_64", ZIP_LIMIT),
    (3008, "container", "arm64", CONTAINER_LIMIT),
    (10240, "container", "x86_64", CONTAINER_LIMIT),
])
@pytest.mark.parametrize("fmt", ["onnx", "pytorch"])
def test_budgets_for(memory_mb, package_type, arch, limit, fmt, monkeypatch):
    monkeypatch.setattr(B.os, "cpu_count", lambda: 16)
    t = target(memory_mb, package_type, architecture=arch)
    b = budgets_for(t, fmt)
    assert isinstance(b, Budgets)
    assert b.package_limit_bytes == limit
    assert b.handler_bytes == handler_bytes(fmt)
    assert b.size_ceiling_bytes == limit - handler_bytes(fmt)
    assert b.memory_limit_mb == memory_mb
    assert b.vcpus == t.vcpus
    assert (b.threads, b.latency_scale) == thread_plan(t.vcpus, 16)
    assert "size ceiling" in b.describe() and f"memory {memory_mb} MB" in b.describe()


def test_container_ceiling_exceeds_zip_ceiling():
    for fmt in ("onnx", "pytorch"):
        zip_b, cont_b = budgets_for(target(1769), fmt), budgets_for(target(1769, "container"), fmt)
        assert cont_b.size_ceiling_bytes - zip_b.size_ceiling_bytes == CONTAINER_LIMIT - ZIP_LIMIT


def test_runtime_bytes_order():
    onnx, pytorch = handler_bytes("onnx"), handler_bytes("pytorch")
    assert pytorch > onnx > 0
    # The ONNX runtime of a zip target leaves room for a model; PyTorch's does not fit a zip at all.
    assert budgets_for(target(1769), "onnx").size_ceiling_bytes > 0
    assert budgets_for(target(1769), "pytorch").size_ceiling_bytes < 0


@pytest.mark.parametrize("fields, loc", [
    ({"memory_mb": 127}, ("memory_mb",)),
    ({"memory_mb": 10_241}, ("memory_mb",)),
    ({"memory_mb": 1769, "architecture": "aarch64"}, ("architecture",)),
    ({"memory_mb": 1769, "package_type": "image"}, ("package_type",)),
    ({"memory_mb": 1769, "python": "3.9"}, ("python",)),
    ({"memory_mb": 1769, "timeout_s": 901}, ("timeout_s",)),
    ({"memory_mb": 1769, "ephemeral_storage_mb": 511}, ("ephemeral_storage_mb",)),
    ({"memory_mb": 1769, "vcpus": 1}, ("vcpus",)),
    ({"memory_mb": 3008, "package_type": "container", "direct_upload": True}, ("direct_upload",)),
    ({}, ("memory_mb",)),
])
def test_bad_targets_are_refused_at_the_right_key(fields, loc):
    with pytest.raises(ValidationError) as e:
        LambdaTarget.model_validate({"name": "bad", **fields})
    assert [err["loc"] for err in e.value.errors()] == [loc]


@pytest.mark.parametrize("fields", [
    {"memory_mb": 128}, {"memory_mb": 10_240}, {"memory_mb": 1769, "direct_upload": True},
    {"memory_mb": 3008, "package_type": "container", "architecture": "arm64", "python": "3.13"},
])
def test_good_targets_load(fields):
    t = LambdaTarget.model_validate({"name": "good", **fields})
    assert t.memory_mb == fields["memory_mb"]


@pytest.mark.parametrize("file", REPO_TARGETS, ids=lambda f: f.name)
def test_repo_targets_load(file: Path):
    t = LambdaTarget.model_validate(yaml.safe_load(file.read_text()))
    assert t.name == file.stem  # pipelines name targets by file name
    assert budgets_for(t, "onnx").size_ceiling_bytes > 0


def test_repo_has_targets():
    assert len(REPO_TARGETS) >= 3
