"""Run a measurement child under a real CPU quota and collect the JSON it prints.

The child must wait for one line on stdin ("go") before it starts measuring, so that it can be
moved into the quota group first (`wait_for_go()` does that); its last stdout line is a JSON
object. Nothing heavy is imported here: the parent stays light, the child imports its runtime.
"""
from __future__ import annotations

import json
import subprocess
import sys

from lambdaslim.measure.cpu_quota import CpuQuota, quota_support

STDERR_TAIL = 2000


def wait_for_go() -> None:
    """Child side: block until the parent has placed us in the quota group and said "go"."""
    line = sys.stdin.readline()
    if line.strip() != "go":
        raise SystemExit(f"expected 'go' on stdin, got {line!r}")


def _finish(proc: subprocess.Popen, timeout_s: float, cmd: list[str]) -> str:
    """Say go, wait for the child, and return its stdout; any failure carries its stderr tail."""
    try:
        out, err = proc.communicate("go\n", timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise RuntimeError(f"probe {cmd[:3]} timed out after {timeout_s}s:\n{err[-STDERR_TAIL:]}") from None
    if proc.returncode != 0:
        raise RuntimeError(f"probe {cmd[:3]} exited {proc.returncode}:\n{err[-STDERR_TAIL:]}")
    return out


def _parse(out: str, cmd: list[str]) -> dict:
    lines = [line for line in out.splitlines() if line.strip()]
    if not lines:
        raise RuntimeError(f"probe {cmd[:3]} printed nothing")
    try:
        result = json.loads(lines[-1])
    except json.JSONDecodeError as e:
        raise RuntimeError(f"probe {cmd[:3]} last line is not JSON ({e}): {lines[-1][:200]!r}") from None
    if not isinstance(result, dict):
        raise RuntimeError(f"probe {cmd[:3]} last line is not a JSON object: {lines[-1][:200]!r}")
    return result


def run_probe(cmd: list[str], share: float | None, timeout_s: float, period_us: int = 100_000) -> dict:
    """Run `cmd` (under a CFS quota of `share` CPUs when possible) and return its JSON result plus
    {"quota": {"share", "period_us", "applied", "reason"}}: applied is False, with the reason,
    when no share was asked for, the host cannot make a quota group, or share >= host cores. Inside
    a group it also carries the kernel's periods, throttled_periods and throttled_ms."""
    reason = "no share requested" if share is None else quota_support()
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        if reason is None:
            with CpuQuota(share, period_us) as q:
                q.add(proc.pid)
                out = _finish(proc, timeout_s, cmd)
                throttling = q.throttling()  # the kernel's word on whether the quota bit
            applied = q.applied
            reason = None if applied else f"share {share} >= host cores: no quota needed"
        else:
            applied, throttling = False, {}
            out = _finish(proc, timeout_s, cmd)
    finally:
        if proc.poll() is None:  # an error before the child finished: never leave it running
            proc.kill()
            proc.wait()
    result = _parse(out, cmd)
    result["quota"] = {"share": share, "period_us": period_us, "applied": applied, "reason": reason,
                       **throttling}
    return result
