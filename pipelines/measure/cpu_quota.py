"""A real CFS CPU quota for a child process: a short-lived cgroup (v1 `cpu` or v2) under our own.

Lambda gives a function memory/1769 vCPU; below one vCPU that is a CFS bandwidth quota, so a
call that fits in one period's quota runs at full speed and a longer one is throttled. Measuring
inside a real quota shows that instead of guessing it. Stdlib only; needs root (or a delegated,
writable cgroup) and a mounted cpu controller.
"""
from __future__ import annotations

import errno
import itertools
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

GROUP_PREFIX = "lambdaslim-"
_NAME = re.compile(r"^lambdaslim-(\d+)-(\d+)$")
_COUNTER = itertools.count()


@dataclass(frozen=True)
class Hierarchy:
    version: int  # 1: cgroup v1 `cpu` controller, 2: unified hierarchy
    mount: Path
    parent: Path  # where our groups go: this process's own cgroup, or the mount root


def _unescape(field: str) -> str:
    # mountinfo escapes spaces and the like as octal (\040)
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _mounts() -> list[tuple[str, Path, set[str]]]:
    """(fstype, mount point, super options) of every cgroup mount of this process."""
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        pre, _, post = line.partition(" - ")
        fstype, _src, opts = (post.split() + ["", "", ""])[:3]
        if fstype in ("cgroup", "cgroup2"):
            out.append((fstype, Path(_unescape(pre.split()[4])), set(opts.split(","))))
    return out


def _own_path(version: int) -> str:
    """This process's cgroup path in the v1 cpu hierarchy or in the v2 one."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _id, controllers, path = line.split(":", 2)
        if (version == 2 and controllers == "") or (version == 1 and "cpu" in controllers.split(",")):
            return path
    return "/"


def _with_parent(version: int, mount: Path) -> Hierarchy:
    own = mount / _own_path(version).lstrip("/")
    # without a cgroup namespace our path may not exist under this mount: fall back to its root
    return Hierarchy(version, mount, own if own.is_dir() else mount)


def find_hierarchy(root: str | os.PathLike | None = None) -> Hierarchy | str:
    """The cpu hierarchy to create groups in, or a one-line reason there is none.
    `root` names a hierarchy's mount point instead of looking it up (tests, unusual mounts)."""
    if root is not None:
        root = Path(root)
        if (root / "cpu.cfs_quota_us").is_file():
            return _with_parent(1, root)
        if (root / "cgroup.controllers").is_file():
            return _with_parent(2, root)
        return f"no cgroup cpu controller at {root}"
    mounts = _mounts()
    for fstype, point, opts in mounts:
        if fstype == "cgroup" and "cpu" in opts:
            return _with_parent(1, point)
    for fstype, point, _opts in mounts:
        if fstype == "cgroup2":
            return _with_parent(2, point)
    return "no cgroup cpu controller mounted"


def _v2_reason(parent: Path) -> str | None:
    if "cpu" not in (parent / "cgroup.controllers").read_text().split():
        return f"cgroup v2 at {parent} lacks the cpu controller (bound to v1, or not delegated)"
    if "cpu" not in (parent / "cgroup.subtree_control").read_text().split():
        return f"cpu not enabled in {parent}/cgroup.subtree_control"
    return None


def quota_support(root: str | os.PathLike | None = None) -> str | None:
    """None when this process can create a cgroup with a CPU quota, else a one-line reason."""
    h = find_hierarchy(root)
    if isinstance(h, str):
        return h
    if h.version == 2 and (reason := _v2_reason(h.parent)):
        return reason
    if not os.access(h.parent, os.W_OK):
        who = "not root" if os.geteuid() != 0 else "root"
        return f"{who} and {h.parent} not writable"
    # the definitive check: make a group, see that the kernel filled in its quota file, remove it
    probe = h.parent / f"{GROUP_PREFIX}{os.getpid()}-{next(_COUNTER)}"  # sweepable if we die here
    try:
        probe.mkdir()
    except OSError as e:
        return f"cannot create a cgroup in {h.parent}: {e.strerror}"
    try:
        qfile = "cpu.cfs_quota_us" if h.version == 1 else "cpu.max"
        if not (probe / qfile).exists():
            return f"{h.parent} is not a cgroup filesystem ({qfile} missing in a new group)"
        if not os.access(probe / qfile, os.W_OK):
            return f"{probe / qfile} not writable"
        return None
    finally:
        _rmdir(probe)


def _rmdir(path: Path) -> None:
    """rmdir a cgroup; exiting tasks can hold it busy for a moment, so retry briefly."""
    for attempt in range(50):
        try:
            path.rmdir()
            return
        except OSError as e:
            if e.errno != errno.EBUSY or attempt == 49:
                raise
            time.sleep(0.01)


def _pids(group: Path) -> list[int]:
    return [int(p) for p in (group / "cgroup.procs").read_text().split()]


def _move_all(src: Path, dst: Path) -> None:
    """Move every process of `src` into `dst` (processes that exit meanwhile are fine)."""
    for _ in range(5):  # a process may fork while we move: repeat until empty
        pids = _pids(src)
        if not pids:
            return
        for pid in pids:
            try:
                (dst / "cgroup.procs").write_text(str(pid))
            except ProcessLookupError:
                pass  # exited between read and write


class CpuQuota:
    """`with CpuQuota(0.29) as q: q.add(pid)` runs `pid` under 0.29 CPUs per period.

    The group is a uniquely named child of this process's cgroup; on exit its processes go back to
    the parent and the group is removed, also after an exception. share >= cores: no quota."""

    def __init__(self, share: float, period_us: int = 100_000, root: str | os.PathLike | None = None):
        if share <= 0:
            raise ValueError(f"share must be > 0, got {share}")
        if not 1_000 <= period_us <= 1_000_000:
            raise ValueError(f"period_us must be in [1000, 1000000] (kernel limits), got {period_us}")
        self.share, self.period_us = share, period_us
        self.applied = share < (os.cpu_count() or 1)
        self.quota_us = round(share * period_us) if self.applied else -1
        if self.applied and self.quota_us < 1_000:
            raise ValueError(f"quota {self.quota_us} us is below the kernel's 1000 us minimum")
        self._root = root
        self.path: Path | None = None
        self._h: Hierarchy | None = None

    def __enter__(self) -> "CpuQuota":
        h = find_hierarchy(self._root)
        if isinstance(h, str):
            raise RuntimeError(f"no CPU quota possible: {h}")
        self._h = h
        self.path = h.parent / f"{GROUP_PREFIX}{os.getpid()}-{next(_COUNTER)}"
        self.path.mkdir()
        try:
            self._write_quota()
        except BaseException:
            _rmdir(self.path)
            raise
        return self

    def _write_quota(self) -> None:
        if self._h.version == 1:
            # period first: a quota is validated against the period in force
            (self.path / "cpu.cfs_period_us").write_text(str(self.period_us))
            (self.path / "cpu.cfs_quota_us").write_text(str(self.quota_us))
        else:
            quota = str(self.quota_us) if self.applied else "max"
            (self.path / "cpu.max").write_text(f"{quota} {self.period_us}")

    def add(self, pid: int) -> None:
        """Move process `pid` (all its threads) into the group."""
        if self.path is None:
            raise RuntimeError("CpuQuota.add outside its `with` block")
        (self.path / "cgroup.procs").write_text(str(pid))

    def pids(self) -> list[int]:
        return _pids(self.path)

    def stat(self) -> dict[str, int]:
        """The group's cpu.stat (nr_periods, nr_throttled, throttled time): did the quota bite?"""
        lines = (self.path / "cpu.stat").read_text().splitlines()
        return {k: int(v) for k, v in (line.split() for line in lines)}

    def throttling(self) -> dict[str, float]:
        """Periods seen, periods throttled and ms throttled so far (v1 reports ns, v2 us). Trust
        throttled_periods: on kernel 6.18 throttled_ms was ~0.3x the wall time actually lost."""
        st = self.stat()
        ms = st["throttled_time"] / 1e6 if "throttled_time" in st else st["throttled_usec"] / 1e3
        return {"periods": st["nr_periods"], "throttled_periods": st["nr_throttled"], "throttled_ms": ms}

    def __exit__(self, *exc) -> None:
        try:
            _move_all(self.path, self._h.parent)
        finally:
            _rmdir(self.path)
            self.path = None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def sweep_stale_quota_groups(root: str | os.PathLike | None = None) -> list[Path]:
    """Remove lambdaslim-<pid>-<n> groups whose creator is dead (it was killed mid-measurement);
    their processes, if any, move to the parent. Returns the groups removed."""
    h = find_hierarchy(root)
    if isinstance(h, str):
        return []
    removed = []
    for parent in dict.fromkeys([h.parent, h.mount]):  # ours first, then the root; no duplicates
        for group in sorted(parent.glob(f"{GROUP_PREFIX}*")):
            m = _NAME.match(group.name)
            if not (m and group.is_dir() and not _alive(int(m.group(1)))):
                continue
            _move_all(group, parent)
            _rmdir(group)
            removed.append(group)
    return removed
