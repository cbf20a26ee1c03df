"""Budgets derived from a target: CPU share and threads, the size ceiling after the runtime, memory."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

from lambdaslim.aws.targets import LambdaTarget
from lambdaslim.packaging.closure import handler_bytes
from lambdaslim.aws import limits as L


@dataclass(frozen=True)
class Budgets:
    vcpus: float
    threads: int  # intra-op threads used when measuring latency
    latency_scale: float  # the old multiplier on one core's time, used only where no CPU quota can be made
    size_ceiling_bytes: int  # for the model artifact, after runtime dependencies
    package_limit_bytes: int
    handler_bytes: int  # the handler's dependency closure for the format (packaging.closure)
    memory_limit_mb: int

    def describe(self) -> str:
        return (f"{self.vcpus:.2f} vCPU -> {self.threads} thread(s) under a {self.vcpus:.2f}-CPU quota; "
                f"size ceiling {self.size_ceiling_bytes / 1e6:,.1f} MB "
                f"({self.package_limit_bytes / 1e6:,.0f} MB - {self.handler_bytes / 1e6:,.1f} MB runtime); "
                f"memory {self.memory_limit_mb} MB")


def thread_plan(vcpus: float, host_cores: int | None = None) -> tuple[int, float]:
    """Threads to measure with, and the factor that turns measured latency into target latency.

    Lambda grants CPU time in proportion to memory: at 0.5 vCPU a single-threaded call gets half a
    core, so it takes ~2x as long. Above one vCPU the function sees ceil(vcpus) cores sharing a quota
    of `vcpus`, so a saturated call is slowed by ceil(vcpus)/vcpus. Threads never exceed host cores.
    """
    threads = max(1, math.ceil(vcpus - 1e-9))
    host = host_cores or os.cpu_count() or 1
    measured_threads = min(threads, host)
    return measured_threads, threads / vcpus


def budgets_for(target: LambdaTarget, fmt: str) -> Budgets:
    threads, scale = thread_plan(target.vcpus)
    if target.package_type == "zip":
        limit = L.ZIP_UNZIPPED_MB * 1_000_000
    else:
        limit = (L.CONTAINER_IMAGE_MB - L.CONTAINER_BASE_IMAGE_MB) * 1_000_000
    runtime = handler_bytes(fmt)
    return Budgets(target.vcpus, threads, scale, limit - runtime, limit, runtime, target.memory_mb)
