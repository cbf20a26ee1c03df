"""Duration and cost per memory setting, and the cheapest setting that meets the latency gate, the way
AWS Lambda Power Tuning computes them (github.com/alexcasalboni/aws-lambda-power-tuning):
cost per invocation = ceil(duration ms) x price per ms at 128 MB x memory / 128, plus the request fee.

Durations come from warm latency measured with 1 and 2 threads on this host, turned into each setting's
CPU share by targets.thread_plan (below 1 vCPU a call gets that fraction of a core; above it, ceil(vCPU)
threads share a quota of vCPU cores). arm64 is priced on the x86_64 durations measured here: Graviton
is not measured, and the table says so.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lambdaslim.aws import limits as L
from lambdaslim.aws.budgets import thread_plan

MEMORY_SETTINGS_MB = (512, 768, 1024, 1280, 1536, 1769, 2048, 2560, 3008)
ARCHITECTURES = ("x86_64", "arm64")
INVOCATIONS = 1_000_000


def price_per_ms_128(arch: str) -> float:
    """Power Tuning's base price: one millisecond at 128 MB."""
    return L.PRICE_PER_GB_S[arch] * (128 / 1024) / 1000


def invocation_cost(duration_ms: float, memory_mb: int, arch: str) -> float:
    billed_ms = math.ceil(duration_ms / L.BILLED_MS_GRANULARITY) * L.BILLED_MS_GRANULARITY
    return billed_ms * price_per_ms_128(arch) * memory_mb / 128 + L.PRICE_PER_REQUEST


def scaled_latency(call_ms_by_threads: dict[int, list[float]], memory_mb: int) -> np.ndarray:
    """The measured calls as they would take at this memory setting's CPU share."""
    vcpus = min(L.VCPU_MAX, memory_mb / L.MB_PER_VCPU)
    threads, scale = thread_plan(vcpus, host_cores=max(call_ms_by_threads))
    return np.asarray(call_ms_by_threads[threads]) * scale


@dataclass(frozen=True)
class Row:
    memory_mb: int
    arch: str
    vcpus: float
    duration_ms: float  # mean: what is billed on average
    latency_p95_ms: float  # what the gate checks
    billed_ms: int
    cost_per_1m_usd: float
    meets_latency: bool
    fits_memory: bool
    measured: bool  # False for arm64: x86_64 durations, Graviton not measured


def cost_table(call_ms_by_threads: dict[int, list[float]], peak_rss_mb: float, latency_gate_ms: float | None,
               memory_settings=MEMORY_SETTINGS_MB, architectures=ARCHITECTURES) -> list[Row]:
    rows = []
    for arch in architectures:
        for m in memory_settings:
            ms = scaled_latency(call_ms_by_threads, m)
            duration, p95 = float(ms.mean()), float(np.percentile(ms, 95))
            rows.append(Row(m, arch, round(min(L.VCPU_MAX, m / L.MB_PER_VCPU), 3), round(duration, 3), round(p95, 3),
                            math.ceil(duration), INVOCATIONS * invocation_cost(duration, m, arch),
                            latency_gate_ms is None or p95 <= latency_gate_ms, peak_rss_mb <= m, arch == "x86_64"))
    return rows


def recommend(rows: list[Row], arch: str) -> Row | None:
    """The cheapest setting of this architecture that meets the latency gate and holds the process
    (ties go to the faster, larger setting, as Power Tuning's cost strategy does)."""
    ok = [r for r in rows if r.arch == arch and r.meets_latency and r.fits_memory]
    return min(ok, key=lambda r: (round(r.cost_per_1m_usd, 6), -r.memory_mb)) if ok else None


def write_csv(rows: list[Row], path: Path) -> None:
    """One line per memory setting, a cost column per architecture (durations are the same: measured once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    by_memory: dict[int, dict] = {}
    for r in rows:
        line = by_memory.setdefault(r.memory_mb, {
            "memory_mb": r.memory_mb, "vcpus": r.vcpus, "duration_ms": r.duration_ms,
            "latency_p95_ms": r.latency_p95_ms, "billed_ms": r.billed_ms, "meets_latency": r.meets_latency,
            "fits_memory": r.fits_memory})
        line[f"cost_{r.arch}_per_1m_usd"] = round(r.cost_per_1m_usd, 4)
    lines = list(by_memory.values())
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(lines[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(lines)


def plot(rows: list[Row], latency_gate_ms: float | None, best: Row | None, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on build machines
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for arch, style in zip(ARCHITECTURES, ("o-", "s--")):
        rs = [r for r in rows if r.arch == arch]
        label = f"{arch} cost" + ("" if rs and rs[0].measured else " (x86_64 durations)")
        ax.plot([r.memory_mb for r in rs], [r.cost_per_1m_usd for r in rs], style, label=label)
    ax.set_xlabel("memory (MB)")
    ax.set_ylabel("USD per 1M invocations")
    ax2 = ax.twinx()
    x86 = [r for r in rows if r.arch == "x86_64"]
    ax2.plot([r.memory_mb for r in x86], [r.latency_p95_ms for r in x86], "g^:", label="p95 latency")
    if latency_gate_ms is not None:
        ax2.axhline(latency_gate_ms, color="red", lw=0.8, label=f"latency gate {latency_gate_ms:g} ms")
    ax2.set_ylabel("ms")
    if best is not None:
        ax.axvline(best.memory_mb, color="grey", lw=0.8, ls="-.")
        ax.annotate(f"recommended {best.memory_mb} MB {best.arch}", (best.memory_mb, best.cost_per_1m_usd),
                    textcoords="offset points", xytext=(6, 10), fontsize=8)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="upper center")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
