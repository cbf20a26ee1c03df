"""The packaged handler under fire: a package tree built as Lambda unpacks it, every fuzz event sent to it
in one fresh interpreter (stdlib and the package only, through the harness `lambdaslim package` measures
with), each response checked, and the labels good events must get.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from lambdaslim.testing.cli_runs import RUN_TIMEOUT_S
from lambdaslim.testing.fuzz import FuzzEvent


@dataclass
class FuzzOutcome:
    """Counts from one interpreter's worth of events, and what was wrong."""

    sent: int
    crashed: bool  # the process died (or a handler call raised, which kills the harness)
    good: int
    good_correct: int
    bad: int
    bad_4xx_json: int
    over_limit: int
    over_limit_4xx: int
    problems: list[str]
    stderr: str
    seconds: float


def check_response(ev: FuzzEvent, r, expected: dict[str, str]) -> str | None:
    """None when the response is right for the event, else what is wrong."""
    if not isinstance(r, dict) or "statusCode" not in r:
        return f"not a response: {str(r)[:200]}"
    status = r["statusCode"]
    if ev.proxy:
        if r.get("headers", {}).get("Content-Type") != "application/json":
            return "proxy response without a JSON content type"
        try:
            payload = json.loads(r["body"])
        except (TypeError, ValueError):
            return f"proxy body is not JSON: {str(r.get('body'))[:200]}"
    else:
        payload = r
    if ev.texts is not None:
        return check_predictions(ev, status, payload, expected)
    if status not in (400, 413) or (ev.over_limit and ev.proxy and status != 413):
        return f"bad event ({ev.category}) answered {status}"
    err = payload.get("error") if isinstance(payload, dict) else None
    if not (isinstance(err, dict) and isinstance(err.get("message"), str) and err["message"]
            and err.get("type") in ("BadRequest", "PayloadTooLarge")):
        return f"bad event ({ev.category}) without a JSON error: {str(payload)[:300]}"
    return None


def check_predictions(ev: FuzzEvent, status: int, payload, expected: dict[str, str]) -> str | None:
    """None when a good event got 200, the expected labels in order and scores summing to 1."""
    if status != 200:
        return f"good event answered {status}: {str(payload)[:300]}"
    labels = [p["label"] for p in payload["predictions"]]
    want = [expected[t] for t in ev.texts]
    if labels != want:
        return f"labels {labels} != {want}"
    if any(abs(sum(p["scores"].values()) - 1) > 1e-4 for p in payload["predictions"]):
        return "scores do not sum to 1"
    return None


def send_events(task_root: Path, events: list[FuzzEvent], expected: dict[str, str], workdir: Path,
                env: dict | None = None) -> FuzzOutcome:
    """Every event to the packaged handler in one fresh interpreter (stdlib + the package only), through
    the same harness `lambdaslim package` measures with; then each response checked."""
    from lambdaslim.packaging.invoke import HARNESS
    from lambdaslim.packaging.runtime_api import lambda_env

    events_file, out_file = workdir / "events.json", workdir / "out.json"
    events_file.write_text(json.dumps([e.event for e in events]))
    out_file.unlink(missing_ok=True)
    cmd = [sys.executable, "-B", "-S", "-E", "-P", str(HARNESS), str(task_root), "handler", str(events_file),
           str(out_file)]
    started = time.perf_counter()
    res = subprocess.run(cmd, cwd=task_root, env=lambda_env(1769, "3.11", env), capture_output=True, text=True,
                         timeout=RUN_TIMEOUT_S)
    seconds = time.perf_counter() - started
    crashed = res.returncode != 0 or not out_file.is_file()
    responses = json.loads(out_file.read_text())["responses"] if not crashed else []
    problems = [] if not crashed else [f"exit {res.returncode}: {res.stderr[-3000:]}"]
    good = bad = good_ok = bad_ok = over = over_ok = 0
    for ev, r in zip(events, responses):
        wrong = check_response(ev, r, expected)
        if ev.texts is not None:
            good += 1
            good_ok += wrong is None
        else:
            bad += 1
            bad_ok += wrong is None
        if ev.over_limit:
            over += 1
            over_ok += wrong is None
        if wrong:
            problems.append(wrong)
    if "Traceback" in res.stderr or "Traceback" in res.stdout:
        problems.append("a traceback was printed: " + res.stderr[-2000:])
    return FuzzOutcome(len(events), crashed, good, good_ok, bad, bad_ok, over, over_ok, problems, res.stderr, seconds)


def build_task_root(best_dir: Path, dest: Path) -> Path:
    """A package tree as Lambda unpacks it (dependencies from this venv + handler.py + model/), built with
    the packaging code itself; byte-compilation skipped (the harness runs with -B anyway)."""
    from lambdaslim.packaging import build, deps

    site = dest.parent / (dest.name + "-site")
    deps.install_from_venv([p.name for p in deps.runtime_pins("onnx")], site)
    build.assemble_tree(site, best_dir, dest, python="0.0")  # "0.0": not this interpreter, so no bytecode
    shutil.rmtree(site)
    return dest


def reference_labels(best_dir: Path, texts: list[str], max_length: int) -> dict[str, str]:
    """What the project's own ONNX Runtime path (transformers tokenizer, batch 1) predicts for each text."""
    from lambdaslim.compressors import Artifact
    from lambdaslim.measure.predictors import load_tokenizer, open_predictor

    tok = load_tokenizer(best_dir)
    predict = open_predictor(Artifact(best_dir, "onnx"), 1)
    id2label = json.loads((best_dir / "config.json").read_text())["id2label"]
    out = {}
    for t in dict.fromkeys(texts):
        enc = tok(t, truncation=True, max_length=max_length, return_tensors="np")
        out[t] = id2label[str(int(predict(dict(enc)).argmax()))]
    return out
