"""The three measurements taken after every stage: task accuracy, bytes on disk, latency (and memory)."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, f1_score

from compressors.base import Artifact
from pipelines.data import Split
from pipelines.runtime import load_tokenizer, open_predictor


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


def batch1_feeds(artifact: Artifact, texts: list[str], max_length: int) -> list[dict]:
    """One tokenized sentence per call, as Lambda serves it (no padding)."""
    tok = load_tokenizer(artifact.path)
    return [dict(tok(t, truncation=True, max_length=max_length, return_tensors="np")) for t in texts]


def time_calls(predict, feeds: list[dict], runs: int, warmup: int = 0, offset: int = 0) -> np.ndarray:
    """Milliseconds of `runs` calls cycling through `feeds` (after `warmup` untimed calls)."""
    for i in range(warmup):
        predict(feeds[i % len(feeds)])
    times = np.empty(runs)
    for i in range(runs):
        f = feeds[(offset + i) % len(feeds)]
        t0 = time.perf_counter()
        predict(f)
        times[i] = time.perf_counter() - t0
    return times * 1000


def measure_latency(artifact: Artifact, texts: list[str], max_length: int, threads: int, runs: int,
                    warmup: int, scale: float = 1.0) -> dict:
    """Batch-1 calls on real sentences in a fresh session; tokenization is done beforehand so the
    figure is the model's own time. `scale` converts host-core time into the target's CPU share."""
    feeds = batch1_feeds(artifact, texts, max_length)
    ms = time_calls(open_predictor(artifact, threads), feeds, runs, warmup) * scale
    return {
        "latency_p50_ms": round(float(np.percentile(ms, 50)), 4),
        "latency_p95_ms": round(float(np.percentile(ms, 95)), 4),
        "latency_p99_ms": round(float(np.percentile(ms, 99)), 4),
        "latency_mean_ms": round(float(ms.mean()), 4),
        "latency_runs": runs,
        "threads": threads,
        "latency_scale": round(scale, 4),
    }


def measure_memory(artifact: Artifact, text: str, max_length: int, threads: int) -> dict:
    """Peak resident memory of a fresh process that imports only that format's runtime, loads the
    model and runs one call: what the Lambda execution environment will hold."""
    cmd = [sys.executable, "-m", "pipelines.memprobe", str(artifact.path), artifact.format, str(threads),
           str(max_length), text]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])
