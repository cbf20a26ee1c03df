"""Invoke a built package as Lambda would: fresh processes at 1 and 2 threads, the torch baseline, awslambdaric."""
from __future__ import annotations

import json
import os
import sys
from importlib import metadata
from pathlib import Path

import numpy as np

from lambdaslim.aws import limits as L
from lambdaslim.packaging import deps
from lambdaslim.packaging.request_limits import MAX_BATCH, MAX_TEXT_CHARS, largest_request
from lambdaslim.packaging.invoke import Invocation, invoke_package, invoke_torch_baseline, text_events

RIC_DISTRIBUTIONS = ("awslambdaric", "simplejson", "snapshot-restore-py")
MEASURED_MEMORY_MB = {1: L.MB_PER_VCPU, 2: 2 * L.MB_PER_VCPU}  # settings whose handler runs 1 and 2 threads
BAD_EVENTS = [  # each must be answered with 400 and a JSON error
    {"inputs": []},
    {"inputs": 42},
    {"text": "wrong field"},
    {"requestContext": {"http": {"method": "POST"}}, "body": "{not json", "isBase64Encoded": False},
]



def measure_package(built: dict, split, label_names: list[str], opts, python: str, arch: str, env: dict,
             baseline: Path | None, work: Path, progress) -> dict:
    """Fresh-process invocations: the package at 1 and 2 threads, the torch baseline, awslambdaric."""
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    if python != here or deps.WHEEL_ARCH[arch] != os.uname().machine:
        why = f"the package is for python{python} {arch}; this host runs python{here} {os.uname().machine}"
        progress(f"  invocation skipped: {why}")
        return {"skipped": why}
    root = built["task_root"]
    texts = [split.texts[i % len(split)] for i in range(opts.calls)]
    truth = [label_names[int(split.labels[i % len(split)])] for i in range(opts.calls)]
    events = text_events(texts)
    runs: dict[int, Invocation] = {}
    for threads, memory in MEASURED_MEMORY_MB.items():
        if threads > (os.cpu_count() or 1):
            continue
        # The 1-thread run ends with the bad events and one request at the handler's limits: its peak memory
        # is what the memory recommendation must hold, not the peak of single sentences.
        extra = BAD_EVENTS + [{"inputs": largest_request(texts[0])}] if threads == 1 else []
        runs[threads] = invoke_package(root, events + extra, memory, python, env)
    one = runs[1]
    bad = one.responses[len(events):len(events) + len(BAD_EVENTS)]
    largest_ok = one.responses[-1].get("statusCode", 200) == 200 and "predictions" in one.responses[-1]
    one.responses, one.call_ms = one.responses[: len(events)], one.call_ms[: len(events)]
    pkg = _summary(one, truth)
    pkg |= {"bad_events_answered_400": all(_is_json_400(r) for r in bad), "largest_request_served": largest_ok,
            "peak_rss_includes": f"one request of {MAX_BATCH} texts x {MAX_TEXT_CHARS} characters",
            "sys_path": one.sys_path, "loaded": one.loaded,
            "powertools_metrics_emitted": '"_aws"' in one.logs and '"CloudWatchMetrics"' in one.logs}
    if 2 in runs:
        pkg["two_threads"] = runs[2].latency()
    progress(f"  package: init {pkg['init_ms']:.0f} ms, warm p50 {pkg['p50_ms']:.2f} ms, "
             f"peak RSS {pkg['peak_rss_mb']:.0f} MB, torch loaded: {one.loaded['torch']}")
    result = {"package": pkg, "call_ms_by_threads": {t: r.call_ms[: len(events)] for t, r in runs.items()}}
    if not opts.torch_baseline:
        result["torch_baseline"] = {"skipped": "not asked for"}
    elif baseline is not None:
        tb = invoke_torch_baseline(baseline, events, MEASURED_MEMORY_MB[1], python)
        result["torch_baseline"] = _summary(tb, truth) | {"model_dir": str(baseline)}
        result["init_speedup"] = result["torch_baseline"]["init_ms"] / pkg["init_ms"]
        agree = [a == b for a, b in zip(one.labels(), tb.labels())]
        result["label_agreement_with_torch"] = float(np.mean(agree))
        progress(f"  torch+transformers: init {tb.init_ms:.0f} ms, "
                 f"warm p50 {result['torch_baseline']['p50_ms']:.2f} ms "
                 f"-> init {result['init_speedup']:.1f}x faster packaged")
    else:
        result["torch_baseline"] = {"skipped": "the pipeline's model is not a local PyTorch directory"}
    result["awslambdaric"] = _drive_ric(root, events[: opts.ric_calls], python, env, work, built["layout"]["with_ric"])
    return result


def _is_json_400(response: dict) -> bool:
    body = json.loads(response["body"]) if "body" in response else response
    return response.get("statusCode") == 400 and isinstance(body.get("error", {}).get("message"), str)


def _summary(inv: Invocation, truth: list[str]) -> dict:
    """Init, warm latency, peak memory, and how many answers match the evaluation labels."""
    correct = [p is not None and p == [t] for p, t in zip(inv.labels(), truth)]
    return {"init_ms": inv.init_ms, **inv.latency(), "peak_rss_mb": inv.peak_rss_mb,
            "accuracy_on_calls": 100 * float(np.mean(correct))}


def _drive_ric(root: Path, events: list, python: str, env: dict, work: Path, ric_inside: bool) -> dict:
    from lambdaslim.packaging.runtime_api import drive, lambda_env

    if not events:
        return {"skipped": "--ric-calls 0"}
    runtime = root if ric_inside else work / "emulated-runtime"  # the managed runtime brings awslambdaric
    if not ric_inside:
        try:
            deps.install_from_venv(list(RIC_DISTRIBUTIONS), runtime)
        except metadata.PackageNotFoundError as e:
            return {"skipped": f"awslambdaric is not installed here ({e})"}
    run = drive(root, runtime, events, lambda_env(MEASURED_MEMORY_MB[1], python, env), log_file=work / "ric.log")
    ms = np.asarray(run.durations_ms)
    return {"process_init_ms": run.init_ms, "p50_ms": float(np.percentile(ms, 50)),
            "p95_ms": float(np.percentile(ms, 95)), "calls": len(ms), "errors": len(run.errors),
            "ok": sum(r.get("statusCode") == 200 for r in run.responses), "peak_rss_mb": run.peak_rss_mb}
