"""Check a pulled data folder (rows, labels, checksums) and write its manifest as DVC metrics.

Usage: python -m pipelines.datacheck DATA_DIR OUT_JSON
"""
from __future__ import annotations

import hashlib
import sys
from collections import Counter
from pathlib import Path

from pipelines.data import DataError, load_split
from pipelines.records import write_json_atomic


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
    write_json_atomic(out, m)
    print(", ".join(f"{k}: {v['rows']:,} rows" for k, v in m.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
