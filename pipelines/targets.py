"""Lambda targets (configs/targets/*.yaml) and the budgets derived from them."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from typing import Literal

from packaging.requirements import Requirement
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from pipelines import lambda_limits as L

# What a deployed handler installs for each artifact format: (distribution, with its dependencies).
# tokenizers goes in without huggingface-hub: the handler reads tokenizer.json and never downloads.
# onnxruntime goes in without its declared dependencies: importing it needs numpy only (flatbuffers,
# packaging, protobuf serve its offline tools). Powertools is the handler's logging and metrics.
RUNTIME_DISTRIBUTIONS = {
    "onnx": (("onnxruntime", False), ("numpy", True), ("tokenizers", False), ("aws-lambda-powertools", True)),
    "pytorch": (("torch", True), ("transformers", True)),
}


class LambdaTarget(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    name: str
    memory_mb: int = Field(ge=L.MEMORY_MB_MIN, le=L.MEMORY_MB_MAX)
    architecture: Literal["x86_64", "arm64"] = "x86_64"
    package_type: Literal["zip", "container"] = "zip"
    python: Literal["3.10", "3.11", "3.12", "3.13"] = "3.11"
    ephemeral_storage_mb: int = Field(512, ge=L.EPHEMERAL_MB_MIN, le=L.EPHEMERAL_MB_MAX)
    timeout_s: int = Field(30, ge=1, le=L.TIMEOUT_S_MAX)
    direct_upload: bool = Field(False, description="zip uploaded without S3: 50 MB zipped limit")

    @field_validator("direct_upload")
    @classmethod
    def _direct_upload_needs_zip(cls, v: bool, info: ValidationInfo) -> bool:
        # A field validator (not a model validator) so the error points at direct_upload, not the top level.
        if v and info.data.get("package_type", "zip") != "zip":
            raise ValueError("direct_upload applies to zip packages only")
        return v

    @property
    def vcpus(self) -> float:
        return min(L.VCPU_MAX, self.memory_mb / L.MB_PER_VCPU)


@dataclass(frozen=True)
class Budgets:
    vcpus: float
    threads: int  # intra-op threads used when measuring latency
    latency_scale: float  # multiplies measured latency: >1 when the target owns a fraction of its cores
    size_ceiling_bytes: int  # for the model artifact, after runtime dependencies
    package_limit_bytes: int
    runtime_bytes: int
    memory_limit_mb: int

    def describe(self) -> str:
        return (f"{self.vcpus:.2f} vCPU -> {self.threads} thread(s) x{self.latency_scale:.2f}; "
                f"size ceiling {self.size_ceiling_bytes / 1e6:,.1f} MB "
                f"({self.package_limit_bytes / 1e6:,.0f} MB - {self.runtime_bytes / 1e6:,.1f} MB runtime); "
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
    runtime = runtime_bytes(fmt)
    return Budgets(target.vcpus, threads, scale, limit - runtime, limit, runtime, target.memory_mb)


@lru_cache(maxsize=None)
def runtime_bytes(fmt: str) -> int:
    """Installed size of the handler's dependency closure for this format, less what packages leave out
    (pipelines.packaging.slim), measured on this machine; Lambda's manylinux wheels of the same versions
    are within a few percent."""
    from pipelines.packaging.slim import is_pruned

    dists, _ = runtime_closure(fmt)
    return sum(f.size or 0 for d in dists for f in d.files or []
               if not str(f).startswith("..") and not is_pruned(str(f)))


def runtime_closure(fmt: str) -> tuple[list[metadata.Distribution], list[str]]:
    """The installed distributions a handler of this format needs, and the names not installed here."""
    seen: set[str] = set()
    todo = list(RUNTIME_DISTRIBUTIONS[fmt])
    found, missing = [], []
    while todo:
        name, with_deps = todo.pop()
        name = name.lower().replace("_", "-")
        if name in seen:
            continue
        seen.add(name)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            missing.append(name)
            continue
        found.append(dist)
        for req in dist.requires or [] if with_deps else []:
            r = Requirement(req)
            if r.marker is None or r.marker.evaluate({"extra": ""}):
                todo.append((r.name, True))
    return sorted(found, key=lambda d: d.metadata["Name"].lower()), missing
