"""The one reader of a process's peak resident memory (stdlib only: fresh probe interpreters import it).

VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the parent, so a probe spawned by a 600 MB
runner would report 600 MB. (The package harness, which must import nothing of the project, reads the same
field in three lines of its own.)
"""
from __future__ import annotations

import resource
import threading


def peak_rss_mb(pid: int | str = "self") -> float:
    """High-water mark of process `pid`'s resident memory, in MB (1,024 KB)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        if pid != "self":
            raise
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024  # macOS: bytes, no exec carry-over


class PeakDuring:
    """Peak resident memory of this process while a block runs (sampled every 5 ms on a thread): how much a
    step itself needs, which the lifetime high-water mark above cannot tell."""

    def __enter__(self):
        import psutil

        self._proc, self._stop = psutil.Process(), threading.Event()
        self.start = self.peak = self._proc.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._proc.memory_info().rss)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)
        self.peak_mb, self.growth_mb = round(self.peak / 2**20, 1), round((self.peak - self.start) / 2**20, 1)
