"""Evaluation / calibration / train splits: local tabular files, or a `datasets` name when online."""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class DataError(ValueError):
    """A split that cannot be read as (text, label) rows."""


@dataclass(frozen=True)
class Split:
    texts: list[str]
    labels: np.ndarray  # int64, one per text

    def __len__(self) -> int:
        return len(self.texts)

    def head(self, n: int) -> "Split":
        return Split(self.texts[:n], self.labels[:n])


def _rows_from_file(path: Path) -> list[dict]:
    suffix = path.suffix.lower()
    if suffix in (".tsv", ".csv"):
        # SST-2 sentences contain quotes; QUOTE_NONE keeps them as text rather than field delimiters.
        quoting = csv.QUOTE_NONE if suffix == ".tsv" else csv.QUOTE_MINIMAL
        with path.open(newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ",", quoting=quoting))
    if suffix in (".jsonl", ".json"):
        with path.open(encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    raise DataError(f"{path}: unsupported file type {suffix!r} (use .tsv, .csv or .jsonl)")


def load_split(
    source: str | Path,
    text_column: str = "sentence",
    label_column: str = "label",
    label_names: list[str] | None = None,
    split: str = "validation",
    limit: int | None = None,
) -> Split:
    """Read a split from a local file, or from the `datasets` hub when `source` is not a path."""
    path = Path(source)
    if path.exists():
        rows = _rows_from_file(path)
    elif str(source).startswith("hf:"):
        from datasets import load_dataset  # only reached online; local files never need it

        rows = list(load_dataset(str(source)[3:], split=split))
    else:
        raise DataError(f"{source}: no such file (prefix a hub dataset name with 'hf:')")
    if not rows:
        raise DataError(f"{source}: no rows")
    missing = [c for c in (text_column, label_column) if c not in rows[0]]
    if missing:
        raise DataError(f"{source}: missing column(s) {missing}; found {sorted(rows[0])}")
    if limit is not None:
        rows = rows[:limit]
    texts = [str(r[text_column]) for r in rows]
    labels = np.array([_label_id(r[label_column], label_names, source) for r in rows], dtype=np.int64)
    return Split(texts, labels)


def _label_id(value, label_names: list[str] | None, source) -> int:
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        return int(text)
    if label_names and text in label_names:
        return label_names.index(text)
    raise DataError(f"{source}: label {text!r} is neither an integer nor one of {label_names}")


def declared_source(s, root: Path) -> str | Path:
    """Where a split declared in a pipeline file (path, columns, limit) is read from."""
    if s.path.startswith("hf:"):
        return s.path
    p = Path(s.path)
    return p if p.is_absolute() else root / p


def load_declared(s, root: Path, label_names: list[str] | None) -> Split:
    """The one loader of a pipeline's declared splits (eval, calibration, train)."""
    return load_split(declared_source(s, root), s.text_column, s.label_column, label_names, limit=s.limit)


def declared_digest(s, root: Path) -> dict:
    """What a result computed from a declared split depends on: its content, the columns read, the limit."""
    from lambdaslim.store.keys import file_digest

    return {"content": file_digest(declared_source(s, root)), "text_column": s.text_column,
            "label_column": s.label_column, "limit": s.limit}
