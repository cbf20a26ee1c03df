"""Invoke a package as Lambda would, in fresh interpreters, and the torch+transformers baseline beside it.

The package runs under `python -B -S -E -P`: standard library plus the unpacked package (nothing from
this venv), no bytecode written (/var/task is read-only on Lambda), Lambda's environment variables.
The baseline runs torch_handler.py with this venv (it needs torch and transformers) and the same events.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lambdaslim.packaging.runtime_api import lambda_env

HERE = Path(__file__).resolve().parent
HARNESS = HERE / "harness.py"


@dataclass
class Invocation:
    """One fresh execution environment: its init and N warm calls."""

    init_ms: float  # import of the handler module: imports, model load, warm-up
    call_ms: list[float]
    peak_rss_mb: float
    responses: list
    loaded: dict[str, bool]  # which of torch, transformers, onnxruntime, ... the process imported
    sys_path: list[str]
    logs: str  # the handler's stdout: Powertools JSON logs and EMF metrics

    def latency(self) -> dict:
        ms = np.asarray(self.call_ms)
        return {"p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
                "mean_ms": float(ms.mean()), "calls": len(ms)}

    def labels(self) -> list:
        return [[p["label"] for p in r["predictions"]] if r.get("statusCode") == 200 else None
                for r in self.responses]


def text_events(texts: list[str]) -> list[dict]:
    """Direct invokes, one sentence each: batch 1, as a synchronous API serves them."""
    return [{"inputs": t} for t in texts]


def invoke_package(task_root: Path, events: list, memory_mb: int, python: str, env: dict | None = None) -> Invocation:
    cmd = [sys.executable, "-B", "-S", "-E", "-P", str(HARNESS), str(task_root), "handler"]
    return _run(cmd, events, lambda_env(memory_mb, python, env), cwd=task_root)


def invoke_torch_baseline(model_dir: Path, events: list, memory_mb: int, python: str) -> Invocation:
    env = lambda_env(memory_mb, python, {"LAMBDASLIM_MODEL_DIR": str(model_dir), "HF_HUB_OFFLINE": "1",
                                         "TRANSFORMERS_OFFLINE": "1", "POWERTOOLS_SERVICE_NAME": "lambdaslim-torch"})
    with tempfile.TemporaryDirectory(prefix="lambdaslim-torch-") as task_root:
        # A task root holding only the baseline handler, so no module of this package shadows a library.
        shutil.copy2(HERE / "torch_handler.py", Path(task_root) / "torch_handler.py")
        cmd = [sys.executable, "-B", "-E", "-P", str(HARNESS), task_root, "torch_handler"]
        return _run(cmd, events, env, cwd=model_dir)


def _run(cmd: list[str], events: list, env: dict, cwd: Path) -> Invocation:
    with tempfile.TemporaryDirectory(prefix="lambdaslim-invoke-") as tmp:
        events_file, out_file = Path(tmp) / "events.json", Path(tmp) / "out.json"
        events_file.write_text(json.dumps(events))
        res = subprocess.run(cmd + [str(events_file), str(out_file)], cwd=cwd, env=env, capture_output=True, text=True)
        if res.returncode != 0:
            tail = "\n".join((res.stderr or res.stdout).strip().splitlines()[-15:])
            raise RuntimeError(f"the handler failed in a fresh interpreter ({' '.join(cmd[:6])} ...):\n{tail}")
        r = json.loads(out_file.read_text())
    return Invocation(r["init_ms"], r["call_ms"], r["peak_rss_mb"], r["responses"], r["loaded"], r["sys_path"],
                      res.stdout)
