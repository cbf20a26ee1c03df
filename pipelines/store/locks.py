"""Processes that share a project: who is alive, one run per pipeline at a time, and what a killed one left.

- A process is named by (host, pid, start time): a pid alone is reused by the OS, the start time is not.
- `pipeline_lock` is an advisory flock on `artifacts/<pipeline>/.lock`: two runs of the same pipeline
  take turns (the second one waits, then finds every stage finished); the OS drops the lock when its
  holder dies, even by `kill -9`, so no stale lock is ever left to clean up.
- `sweep_stale_temps` removes the temporary files and folders (`.<name>.tmp-<pid>`, `.<name>.old-<pid>`,
  named by `store.atomic.temp_path`) of processes that no longer exist; those of live processes are left alone.
"""
from __future__ import annotations

import fcntl
import os
import re
import shutil
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

# .export_onnx-0123.tmp-4242, .report.json.tmp-4242, .best.old-4242: the one format of store.atomic.temp_path
_TEMP = re.compile(r"^\..+\.(?:tmp|old)-(?P<pid>\d+)$")


def hostname() -> str:
    return socket.gethostname()


def process_started(pid: int) -> float | None:
    """Start time of a live process (seconds since the epoch, 10 ms resolution), None when there is none."""
    import psutil

    try:
        return round(psutil.Process(pid).create_time(), 2)
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None


def process_alive(pid: int, started: float | None = None) -> bool:
    """Whether process `pid` (started at `started`, when known) still runs on this host."""
    now = process_started(pid)
    if now is None:
        return False
    return started is None or abs(now - started) < 0.05


def identity() -> dict[str, str]:
    """This process as tags: host, pid and start time."""
    return {"lambdaslim.host": hostname(), "lambdaslim.pid": str(os.getpid()),
            "lambdaslim.pid_started": f"{process_started(os.getpid()):.2f}"}


def owner_gone(tags: dict[str, str]) -> bool:
    """True only when the tags name a process of this host that has ended; False when unsure
    (another host, or a record written before these tags existed)."""
    if tags.get("lambdaslim.host") != hostname() or not (tags.get("lambdaslim.pid") or "").isdigit():
        return False
    started = tags.get("lambdaslim.pid_started")
    return not process_alive(int(tags["lambdaslim.pid"]), float(started) if started else None)


@contextmanager
def pipeline_lock(run_dir: Path, waiting: Callable[[str], None] = lambda _: None) -> Iterator[None]:
    """Hold the run directory of one pipeline exclusively for the length of the block."""
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            waiting(f"waiting for the run of {run_dir.name} by pid {holder} to finish (one run per pipeline at a time)")
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """A plain exclusive flock on `path` (created if missing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def temp_owner(name: str) -> int | None:
    """The pid in a temporary name this project writes, or None for any other name."""
    m = _TEMP.match(name)
    return int(m["pid"]) if m else None


def sweep_stale_temps(folder: Path, depth: int = 1) -> list[Path]:
    """Remove what killed processes left half-written in `folder` (and `depth` levels below); returns it."""
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        pid = temp_owner(entry.name)
        if pid is not None and pid != os.getpid() and not process_alive(pid):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
        elif pid is None and depth > 0 and entry.is_dir() and not entry.is_symlink():
            removed += sweep_stale_temps(entry, depth - 1)
    return removed
