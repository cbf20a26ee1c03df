"""Write files and folders whole or not at all: build beside the final name, then rename over it.

Every temporary the project makes is named `.<final name>.tmp-<pid>` (a folder being replaced becomes
`.<final name>.old-<pid>` for an instant), so `store.locks.sweep_stale_temps` recognises what a killed
process left behind by one pattern.
"""
from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def temp_path(final: Path, tag: str = "tmp") -> Path:
    """The temporary name beside `final` that this process writes before renaming."""
    return final.with_name(f".{final.name}.{tag}-{os.getpid()}")


@contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path to write (a file, e.g. by torch.save); it replaces `final` when the block ends
    without an error, and is removed when it raises."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(final)
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: Path, text: str) -> None:
    """Readers never see a half-written file."""
    with atomic_path(Path(path)) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: Path, data) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def fresh_temp_dir(final: Path) -> Path:
    """An empty temporary folder beside `final`, to be swapped in by `replace_dir`."""
    tmp = temp_path(final)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def replace_dir(tmp: Path, final: Path) -> None:
    """Swap the finished folder `tmp` in as `final`; whatever was there is removed afterwards."""
    old = temp_path(final, "old")
    if final.exists() or final.is_symlink():
        os.replace(final, old)
    os.replace(tmp, final)
    if old.is_dir() and not old.is_symlink():
        shutil.rmtree(old, ignore_errors=True)
    elif old.exists() or old.is_symlink():
        old.unlink()
