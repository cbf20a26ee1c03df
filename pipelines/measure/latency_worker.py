"""One latency-measuring process per run: started once under the target's CPU quota, it keeps the baseline
loaded and measures each candidate interleaved with it, so a run pays for importing torch once, not once
per candidate. Jobs and results are JSON lines over its stdin and stdout.
"""
from __future__ import annotations

import json
import subprocess
import sys

from lambdaslim.measure.cpu_quota import CpuQuota, quota_support

STDERR_TAIL = 2000


class LatencyWorker:
    """`with LatencyWorker(share) as w: w.measure(job)`; the process and its quota group end with the block."""

    def __init__(self, share: float, cores: int):
        self.share = share
        self.wants_quota = share < cores
        self.reason = quota_support() if self.wants_quota else "share >= host cores"
        self.quota_applied = self.wants_quota and self.reason is None
        self._quota: CpuQuota | None = None
        self._proc: subprocess.Popen | None = None

    def __enter__(self) -> "LatencyWorker":
        self._proc = subprocess.Popen([sys.executable, "-m", "lambdaslim.measure.latency_probe", "--serve"],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, bufsize=1)
        try:
            if self.quota_applied:
                self._quota = CpuQuota(self.share).__enter__()
                self._quota.add(self._proc.pid)
            self._proc.stdin.write("go\n")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def measure(self, job: dict) -> dict:
        """One candidate's figures (the job's `quota_applied` is set here, from what the worker runs under)."""
        self._proc.stdin.write(json.dumps(job | {"quota_applied": self.quota_applied}) + "\n")
        line = self._proc.stdout.readline()
        if not line:
            err = self._proc.stderr.read()[-STDERR_TAIL:]
            raise RuntimeError(f"the latency worker ended without an answer:\n{err}")
        out = json.loads(line)
        if self._quota is not None:
            out["quota"] = {"share": self.share, "applied": True, "reason": None, **self._quota.throttling()}
        else:
            out["quota"] = {"share": self.share, "applied": False, "reason": self.reason}
        return out

    def __exit__(self, *exc) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.stdin.close()  # end of jobs: the worker exits by itself
                try:
                    self._proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
            self._proc.stdout.close()
            self._proc.stderr.close()
        if self._quota is not None:
            self._quota.__exit__(None, None, None)
            self._quota = None
