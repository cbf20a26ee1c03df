"""Check a pulled data folder (rows, labels, checksums) and write its manifest as DVC metrics.

Usage: python -m lambdaslim.data.check DATA_DIR METRICS_JSON [MANIFEST_JSON]

METRICS_JSON holds only row counts (what `dvc metrics show` lists beside the pipelines' figures);
MANIFEST_JSON the per-split label counts and sha256 digests.
"""
from __future__ import annotations

import hashlib
import sys
from collections import Counter
from pathlib import Path

from lambdaslim.data.splits import DataError, load_split
from lambdaslim.store.atomic import write_json_atomic


def manifest(folder: Path) -> dict:
    files = sorted(folder.glob("*.tsv"))
    if not files:
        raise DataError(f"{folder}: no .tsv splits (run `dvc pull` first)")
    out = {}
    for f in files:
        split = load_split(f)
        counts = Counter(int(y) for y in split.labels)
        out[f.stem] = {"rows": len(split), **{f"label_{k}": v for k, v in sorted(counts.items())},
                       "sha256": hashlib.sha256(f.read_bytes()).hexdigest()}
    return out


def main(argv: list[str]) -> int:
    folder, out = Path(argv[0]), Path(argv[1])
    try:
        m = manifest(folder)
    except DataError as e:
        print(f"datacheck: error: {e}", file=sys.stderr)
        return 2
    write_json_atomic(out, {f"{k}_rows": v["rows"] for k, v in m.items()})
    if len(argv) > 2:
        write_json_atomic(Path(argv[2]), m)
    print(", ".join(f"{k}: {v['rows']:,} rows" for k, v in m.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
