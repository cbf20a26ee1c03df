"""The package report (report.json) and the flat figures `dvc metrics` reads (package-metrics.json)."""
from __future__ import annotations


def package_report(built: dict, candidate: dict, config: dict, opts, env: dict, measured: dict,
            gate: float | None) -> dict:
    layout = built["layout"]
    return {
        "candidate": {k: candidate.get(k) for k in ("stage", "kind", "format", "size_bytes", "config_digest")}
                     | {"metrics": {k: candidate.get("metrics", {}).get(k) for k in ("accuracy", "latency_p95_ms")}},
        "labels": [config["id2label"][str(i)] for i in range(len(config["id2label"]))],
        "format": built["format"], "requested_format": built["requested_format"], "reason": built["reason"],
        "layout": layout,
        "deployable": not built["problems"],
        "problems": built["problems"],
        "runtime": {"source": built["source"], "pins": built["pins"], "wheels": built["wheels"],
                    "bytecode": built["bytecode"]},
        "package": built["package"],
        "environment": env,
        "handler": "handler.handler",
        "invocation": measured,
        "latency_gate_ms": gate,
    }


def package_metrics(report: dict) -> dict:
    """The figures `dvc metrics` tracks, flat."""
    inv = report["invocation"]
    pkg, rec = inv.get("package", {}), (report.get("cost") or {}).get("recommended") or {}
    r = lambda v, n=3: None if v is None else round(v, n)  # noqa: E731
    return {
        "format": report["format"], "deployable": report["deployable"],
        "package_zipped_bytes": report["package"].get("zip_bytes"),
        "package_unzipped_bytes": report["package"]["unzipped_bytes"],
        "init_ms": r(pkg.get("init_ms"), 1), "warm_p50_ms": r(pkg.get("p50_ms")), "warm_p95_ms": r(pkg.get("p95_ms")),
        "peak_rss_mb": r(pkg.get("peak_rss_mb"), 1),
        "torch_init_ms": r(inv.get("torch_baseline", {}).get("init_ms"), 1),
        "init_speedup_vs_torch": r(inv.get("init_speedup"), 2),
        "recommended_memory_mb": rec.get("memory_mb"),
        "cost_per_1m_invocations_usd": r(rec.get("cost_per_1m_usd"), 4),
    }
