"""All measurements of one candidate, cached beside its artifact under a key of what they depend on.

A cached measurement also records the conditions it was taken under (threads, CPU quota, host load); it is
retaken when those no longer hold, so a figure taken once on a busy machine never becomes permanent.
"""
from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Callable

from lambdaslim.aws.budgets import budgets_for
from lambdaslim.compressors.base import Artifact
from lambdaslim.data.splits import Split, declared_digest
from lambdaslim.measure import benchmarks
from lambdaslim.measure.cpu_quota import quota_support
from lambdaslim.measure.latency_worker import LatencyWorker
from lambdaslim.store.atomic import write_json_atomic
from lambdaslim.store.digest import digest_json
from lambdaslim.store.keys import RUNTIME_LIBRARIES, code_digest, library_versions

OVERLOADED_PER_CORE = 2.0
MEASURING_CODE = ("lambdaslim.measure.benchmarks", "lambdaslim.measure.latency_probe", "lambdaslim.measure.memprobe")


def measurement_key(artifact_key: str, p, threads: int, share: float) -> str:
    """A cached measurement holds while the artifact, the eval data, the measuring code, the runtimes and
    the target's CPU share are the same."""
    spec = p.spec
    return digest_json({"artifact": artifact_key, "benchmark": spec.benchmark.model_dump(),
                        "eval": declared_digest(spec.data.eval, p.root), "threads": threads, "share": share,
                        "max_length": spec.data.max_length, "code": [code_digest(m) for m in MEASURING_CODE],
                        "runtimes": library_versions(RUNTIME_LIBRARIES)})


def conditions_hold(cached: dict) -> bool:
    """Whether a cached measurement's conditions still hold: the quota it could (or could not) use, and a
    host that was not overloaded while it was taken (or still is)."""
    was = cached.get("conditions") or {}
    if not was:
        return False
    if was.get("quota_applied") != _quota_possible() and was.get("quota_reason") != "share >= host cores":
        return False
    # Overloaded: more runnable work than twice the cores (a run's own measuring processes alone reach ~2).
    limit = OVERLOADED_PER_CORE * (os.cpu_count() or 1)
    return was.get("host_load_1m", 0) <= limit or os.getloadavg()[0] > limit


@lru_cache(maxsize=1)
def _quota_possible() -> bool:
    """Once per process: quota_support() creates and removes a probe cgroup, too much for every cache read."""
    return quota_support() is None


def measure_candidate(artifact: Artifact, split: Split, p, cache_dir: Path, artifact_key: str,
                      baseline: Artifact | None, worker: Callable[[], LatencyWorker] | None = None) -> dict:
    """`worker` starts (or returns) the run's latency process; called only when something is measured."""
    budgets = budgets_for(p.target, artifact.format)
    key = measurement_key(artifact_key, p, budgets.threads, budgets.vcpus)
    cache = cache_dir / f"bench-{key[:12]}.json"
    metrics = _read(cache)
    if metrics is None or not conditions_hold(metrics):
        metrics = measure_all(artifact, split, p.spec, budgets.threads, budgets.vcpus, baseline,
                              worker() if worker else None)
        write_json_atomic(cache, metrics)
    size = benchmarks.measure_size(artifact.path)
    return metrics | {"size_bytes": size, "size_mb": round(size / 1e6, 3)}


def _read(cache: Path) -> dict | None:
    """A cached measurement, or None when there is none or it is not one (a damaged file is measured again)."""
    try:
        data = json.loads(cache.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "latency_p95_ms" in data else None


def measure_all(artifact: Artifact, split: Split, spec, threads: int, share: float,
                baseline: Artifact | None, worker: LatencyWorker | None = None) -> dict:
    b, max_len = spec.benchmark, spec.data.max_length
    metrics = benchmarks.measure_accuracy(artifact, split, max_len, b.batch_size, threads)
    metrics |= benchmarks.measure_latency(artifact, split.texts, max_len, threads, share, b.latency_runs,
                                          b.warmup_runs, baseline, worker)
    metrics |= benchmarks.measure_memory(artifact, split.texts[0], max_len, threads)
    return metrics
