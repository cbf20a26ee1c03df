"""CPU burners: busy processes on the host's other cores, to check that measurements hold under load.

Bounded: each burner ends by itself after `max_s` seconds, and the context manager kills them on exit.
"""
from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from typing import Iterator

BUSY = "import time\nend = time.monotonic() + {max_s}\nwhile time.monotonic() < end:\n    pass\n"


@contextmanager
def cpu_burners(count: int | None = None, max_s: float = 900) -> Iterator[list[int]]:
    """`count` busy Python loops (default: one per core but one), yielding their pids."""
    n = max(1, (os.cpu_count() or 2) - 1) if count is None else count
    procs = [subprocess.Popen([sys.executable, "-c", BUSY.format(max_s=max_s)]) for _ in range(n)]
    try:
        yield [p.pid for p in procs]
    finally:
        for p in procs:
            p.kill()
            p.wait()
