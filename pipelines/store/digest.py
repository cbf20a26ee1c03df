"""Content digests: stage outputs are keyed by (input, config, code) so reruns skip finished work."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path


def digest_json(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def digest_dir(path: Path) -> str:
    """Names and bytes of every file: two copies of the same model digest the same."""
    h = hashlib.sha256()
    for f in sorted(p for p in Path(path).rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode())
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()
