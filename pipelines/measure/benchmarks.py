"""The three measurements taken after every stage: task accuracy, bytes on disk, latency (and memory)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, f1_score

from lambdaslim.compressors.base import Artifact
from lambdaslim.data.splits import Split
from lambdaslim.measure.cpu_quota import quota_support
from lambdaslim.measure.latency_worker import LatencyWorker
from lambdaslim.measure.predictors import load_tokenizer, open_predictor
from lambdaslim.measure.quota_probe import run_probe

LATENCY_ROUNDS = 5  # rounds alternate candidate and baseline, so both see the same host conditions
PROBE_TIMEOUT_S = 1800


def measure_size(path: Path) -> int:
    """Bytes of every file of the artifact: what a package has to carry (not the stage record, nor the
    cached measurements kept beside it, whose size would depend on the digits of a latency)."""
    return sum(f.stat().st_size for f in Path(path).rglob("*")
               if f.is_file() and f.name != "stage.json" and not (f.name.startswith("bench-") and f.suffix == ".json")
               and not f.name.startswith("."))


def predict_logits(artifact: Artifact, texts: list[str], max_length: int, batch_size: int, threads: int) -> np.ndarray:
    tok = load_tokenizer(artifact.path)
    predict = open_predictor(artifact, threads)
    out = []
    for i in range(0, len(texts), batch_size):
        enc = tok(texts[i : i + batch_size], padding=True, truncation=True, max_length=max_length,
                  return_tensors="np")
        out.append(predict(dict(enc)))
    return np.concatenate(out)


def classification_metrics(labels: np.ndarray, logits: np.ndarray) -> dict:
    pred = logits.argmax(-1)
    return {
        "accuracy": round(100 * accuracy_score(labels, pred), 4),
        "macro_f1": round(100 * f1_score(labels, pred, average="macro"), 4),
        "eval_samples": len(labels),
    }


def measure_accuracy(artifact: Artifact, split: Split, max_length: int, batch_size: int, threads: int) -> dict:
    return classification_metrics(split.labels, predict_logits(artifact, split.texts, max_length, batch_size, threads))


def latency_job(artifact: Artifact, texts: list[str], max_length: int, threads: int, share: float, runs: int,
                warmup: int, baseline: Artifact | None = None, rounds: int = LATENCY_ROUNDS) -> dict:
    """What the latency process measures: batch-1 calls on real sentences, interleaved with the baseline."""
    return {"candidate": {"path": str(artifact.path), "format": artifact.format},
            "baseline": baseline and {"path": str(baseline.path), "format": baseline.format},
            "texts": list(texts), "max_length": max_length, "threads": threads, "share": share,
            "rounds": rounds, "calls_per_round": max(1, runs // rounds), "warmup": warmup}


def measure_latency(artifact: Artifact, texts: list[str], max_length: int, threads: int, share: float, runs: int,
                    warmup: int, baseline: Artifact | None = None, worker: LatencyWorker | None = None) -> dict:
    """Batch-1 calls on real sentences in a separate process, interleaved round by round with the baseline,
    each call's wall and CPU time recorded. The process runs under a CPU quota of the target's `share`
    when this host can make one; the gated `latency_*` figures are derived from CPU time, which another
    job on the host barely moves (wall time is reported beside them). `worker`: a run's long-lived
    measuring process; without one, a fresh process measures this candidate alone."""
    job = latency_job(artifact, texts, max_length, threads, share, runs, warmup, baseline)
    load_before = os.getloadavg()[0]
    if worker is not None:
        out = worker.measure(job)
    else:
        out = _measure_once(job, share)
    quota = out.pop("quota")
    out["conditions"] = {"threads": threads, "share": round(share, 4), "quota_applied": bool(quota["applied"]),
                         "quota_reason": quota["reason"], "host_cores": os.cpu_count(),
                         "host_load_1m": round(max(load_before, os.getloadavg()[0]), 2)}
    out["latency_runs"] = job["calls_per_round"] * job["rounds"]
    return out


def _measure_once(job: dict, share: float) -> dict:
    wants_quota = share < (os.cpu_count() or 1)
    job["quota_applied"] = wants_quota and quota_support() is None
    with tempfile.TemporaryDirectory(prefix="lambdaslim-probe-") as tmp:
        file = Path(tmp) / "job.json"
        file.write_text(json.dumps(job))
        out = run_probe([sys.executable, "-m", "lambdaslim.measure.latency_probe", str(file)],
                        share if job["quota_applied"] else None, timeout_s=PROBE_TIMEOUT_S)
    if not wants_quota:
        out["quota"]["reason"] = "share >= host cores"
    return out


def measure_memory(artifact: Artifact, text: str, max_length: int, threads: int) -> dict:
    """Peak resident memory of a fresh process that imports only that format's runtime, loads the
    model and runs one call: what the Lambda execution environment will hold."""
    cmd = [sys.executable, "-m", "lambdaslim.measure.memprobe", str(artifact.path), artifact.format, str(threads),
           str(max_length), text]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])
