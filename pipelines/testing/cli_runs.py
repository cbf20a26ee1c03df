"""Real `lambdaslim run` processes on tiny projects: started in a fresh interpreter against a project's own
sqlite MLflow store, optionally killed with SIGKILL part-way, or several started at the same moment.

Nothing is mocked: each run is the CLI as a user or a service would start it.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from lambdaslim.testing.mlflow_runs import tracking_uri
from lambdaslim.testing.tiny import write_tiny_project

RUN_TIMEOUT_S = 900  # one tiny run takes ~30 s alone; generous for a machine shared with other jobs

KILL_STAGES = "  - kind: export_onnx\n  - kind: quantize_dynamic\n"
# objective: size makes the selection independent of timings, so `best` must match between runs too.
KILL_EXTRA = "objective: size\n"


def tiny_project(root: Path, model_dir: Path, name: str = "tiny", stages: str = KILL_STAGES,
                 extra: str = KILL_EXTRA) -> Path:
    """A tiny project (see lambdaslim.testing.tiny) whose pipeline file also carries `extra` top-level keys."""
    file = write_tiny_project(root, stages, name=name, model_dir=model_dir)
    text = file.read_text()
    file.write_text(text.replace("\nstages:\n", f"\n{extra}stages:\n", 1))
    return file


def cli_env(root: Path) -> dict[str, str]:
    """This process's environment, offline, tracking to `root`/mlflow.db."""
    env = dict(os.environ)
    env.update({"MLFLOW_TRACKING_URI": tracking_uri(root), "HF_HUB_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"})
    env.pop("PYTEST_CURRENT_TEST", None)  # MLflow checks read-only sessions under pytest; not in a real run
    return env


def cli(*args: str) -> list[str]:
    """The command line of `lambdaslim ARGS` in this interpreter."""
    return [sys.executable, "-m", "lambdaslim.cli", *args]


@dataclass
class CliRun:
    """One `lambdaslim run` in a fresh interpreter (its own process group, like a service would run it)."""

    pid: int
    rc: int | None
    lines: list[str]
    stderr: str
    killed: bool = False
    seconds: float = 0.0
    killed_at: str = ""  # the last line printed before the kill


def run_cli(file: Path, root: Path, kill_after_lines: int | None = None, kill_delay_s: float = 0.0,
            timeout_s: float = RUN_TIMEOUT_S) -> CliRun:
    """Run `lambdaslim run FILE` in `root`; with kill_after_lines, SIGKILL its whole process group
    `kill_delay_s` after that many lines of progress have been printed (when it gets that far)."""
    err_file = root / f".stderr-{time.monotonic_ns()}.txt"
    started = time.perf_counter()
    with open(err_file, "w") as err:
        proc = subprocess.Popen(cli("run", str(file)), cwd=root, env=cli_env(root), stdout=subprocess.PIPE,
                                stderr=err, text=True, start_new_session=True)
        lines, killed, killed_at = [], False, ""
        deadline = time.monotonic() + timeout_s
        try:
            for line in proc.stdout:
                lines.append(line.rstrip("\n"))
                if kill_after_lines is not None and len(lines) >= kill_after_lines and not killed:
                    time.sleep(kill_delay_s)
                    killed = kill_group(proc)
                    killed_at = lines[-1]
                if time.monotonic() > deadline:
                    kill_group(proc)
                    raise TimeoutError(f"lambdaslim run {file} took more than {timeout_s} s")
            rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        finally:
            if proc.poll() is None:
                kill_group(proc)
                proc.wait()
    stderr = err_file.read_text()
    err_file.unlink()
    return CliRun(proc.pid, rc, lines, stderr, killed, time.perf_counter() - started, killed_at)


def kill_group(proc: subprocess.Popen) -> bool:
    """kill -9 the run and whatever it started (a memory probe); True when it was still running."""
    if proc.poll() is not None:
        return False
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return True


def run_together(files: list[Path], root: Path) -> list[CliRun]:
    """Start one `lambdaslim run` per file at the same moment (threads block on the processes)."""
    with ThreadPoolExecutor(len(files)) as pool:
        return list(pool.map(lambda f: run_cli(f, root), files))
