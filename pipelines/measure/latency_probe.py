"""Child process of a latency measurement: a candidate (and the baseline) timed call by call in interleaved
rounds, in a fresh interpreter that the parent may have put under the target's CPU quota.

Usage: python -m lambdaslim.measure.latency_probe JOB.json   (then "go" on stdin; prints one JSON line)
       python -m lambdaslim.measure.latency_probe --serve      ("go", then one JOB per stdin line, one result
                                                               per stdout line; see latency_worker)
JOB: {"candidate": {"path", "format"}, "baseline": {"path", "format"} | null, "texts", "max_length",
      "threads", "share", "rounds", "calls_per_round", "warmup", "quota_applied"}
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from lambdaslim.compressors.base import Artifact
from lambdaslim.measure.predictors import load_tokenizer, open_predictor
from lambdaslim.measure.quota_probe import wait_for_go
from lambdaslim.measure.timing import interleaved_rounds, latency_series, median_ratio, summarize

QUOTA_PERIOD_S = 0.1  # the CFS period the quota group is made with (run_probe's default)


def batch1_feeds(artifact: Artifact, texts: list[str], max_length: int) -> list[dict]:
    """One tokenized sentence per call, as Lambda serves it (no padding); tokenized before timing so the
    figure is the model's own time."""
    tok = load_tokenizer(artifact.path)
    return [dict(tok(t, truncation=True, max_length=max_length, return_tensors="np")) for t in texts]


def round_spread(values: np.ndarray, rounds: np.ndarray) -> float:
    """Half the range of the per-round p95: how much the figure moves between rounds of one measurement."""
    p95 = [np.percentile(values[rounds == r], 95) for r in np.unique(rounds)]
    return round(float(np.ptp(p95)) / 2, 4)


_LOADED: dict[tuple, object] = {}  # (path, format, threads) -> predictor: the worker keeps the baseline


def _predictor(spec: dict, threads: int, keep: bool):
    key = (spec["path"], spec["format"], threads)
    if key in _LOADED:
        return _LOADED[key]
    pred = open_predictor(Artifact(Path(spec["path"]), spec["format"]), threads)
    if keep:
        _LOADED[key] = pred
    return pred


def measure(job: dict, go=wait_for_go) -> dict:
    threads, share = job["threads"], job["share"]
    cand = Artifact(Path(job["candidate"]["path"]), job["candidate"]["format"])
    feeds = batch1_feeds(cand, job["texts"], job["max_length"])
    predictors = {"candidate": _predictor(job["candidate"], threads, keep=False)}
    if job.get("baseline"):
        predictors["baseline"] = _predictor(job["baseline"], threads, keep=True)
    clock = "thread" if threads == 1 else "process"  # one intra-op thread runs on the calling thread
    # Under a quota below one CPU, each request starts after an idle period (one request at a time per
    # environment), so the quota has refilled: the real wall clock then shows what Lambda would.
    gap = QUOTA_PERIOD_S if job["quota_applied"] and share < 1 else 0.0
    go()
    times = interleaved_rounds(predictors, feeds, job["rounds"], job["calls_per_round"], job["warmup"], clock, gap)
    c = times["candidate"]
    out = summarize(c, share, threads, multiplier_fallback=not job["quota_applied"])
    est = latency_series(c, share, threads, not job["quota_applied"])
    out["latency_p95_spread_ms"] = round_spread(est, c.round_index)
    if "baseline" in times:
        b = times["baseline"]
        out["speedup_vs_baseline"] = round(median_ratio(b.round_medians("cpu_ms"), c.round_medians("cpu_ms")), 3)
        out["wall_speedup_vs_baseline"] = round(median_ratio(b.round_medians("wall_ms"),
                                                             c.round_medians("wall_ms")), 3)
    return out | {"threads": threads, "cpu_clock": clock}


def serve() -> None:
    """Jobs from stdin until it closes, after the parent's "go" (it has moved us into the quota group)."""
    wait_for_go()
    for line in sys.stdin:
        if line.strip():
            print(json.dumps(measure(json.loads(line), go=lambda: None)), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "--serve":
        serve()
    else:
        print(json.dumps(measure(json.loads(Path(sys.argv[1]).read_text()))))
