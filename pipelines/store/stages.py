"""The content-addressed stage store: one folder per stage key, written whole by an atomic rename."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from lambdaslim.compressors.base import Artifact, StageConfigBase, StageContext, Technique
from lambdaslim.store.atomic import fresh_temp_dir, temp_path, write_json_atomic

RECORD = "stage.json"


def stage_folder(store: Path, kind: str, key: str) -> Path:
    return store / f"{kind}-{key[:16]}"


def finished(out: Path) -> dict | None:
    """The record of a finished stage folder, or None when there is none."""
    record = out / RECORD
    return json.loads(record.read_text()) if record.is_file() else None


def run_stage(tech: Technique, cfg: StageConfigBase, inp: Artifact, out: Path, ctx: StageContext) -> tuple[dict, bool]:
    """Run one technique into a temporary folder and rename it into place only when complete;
    returns (info, cached)."""
    done = finished(out)
    if done is not None:
        return done["info"], True
    tmp = fresh_temp_dir(out)
    result = tech.fn(cfg, inp, tmp, ctx)
    info = dict(result.info)
    write_json_atomic(tmp / RECORD, {"kind": tech.kind, "config": cfg.model_dump(mode="json"),
                                     "key": ctx.stage_key, "input": str(inp.path), "info": info})
    if out.exists() and finished(out) is None:
        # Not written by this function (its renames are whole): never mistake it for a finished stage.
        broken = temp_path(out, "old")
        os.replace(out, broken)
        shutil.rmtree(broken, ignore_errors=True)
    try:
        os.replace(tmp, out)
    except OSError:  # another run finished the same stage first: keep theirs, it is identical
        shutil.rmtree(tmp, ignore_errors=True)
    return info, False
