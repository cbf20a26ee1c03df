"""Bad pipeline and target files, and how they must be refused: valid files using every section, seeded or
Hypothesis-driven mutations of them (structure and text), and the verdict on what the CLI did with one
(valid, or refused with exit 2 and one stderr line naming the file, having written nothing).
"""
from __future__ import annotations

import copy
import random
import re
from pathlib import Path
from typing import Callable

# A valid pipeline file using every section, for the tiny project layout (models/tiny, data/eval.tsv,
# data/calib.tsv, configs/targets/x86-1769mb-zip.yaml), so mutations reach every part of the schema.
FULL_PIPELINE_TARGET = "x86-1769mb-zip"
FULL_PIPELINE = f"""name: full
model:
  path: models/tiny
  label_names: [negative, positive]
data:
  eval: {{path: data/eval.tsv}}
  calibration: {{path: data/calib.tsv}}
  max_length: 32
target: {FULL_PIPELINE_TARGET}
gates:
  accuracy: {{metric: accuracy, max_drop: 1.0, relative: false}}
  latency_p95_ms: 25
  size_mb: 80
  memory: true
benchmark: {{latency_runs: 200, warmup_runs: 5, batch_size: 16}}
tracking: {{experiment: full-exp, log_models: false}}
objective: size
artifacts_dir: build/artifacts
stages:
  - {{kind: export_onnx, opset: 17}}
  - {{kind: optimize_onnx, name: opt, level: 2}}
  - kind: quantize_static
    calibration_samples: 16
    fallback: {{max_drop: 0.5, max_trials: 2}}
  - {{kind: quantize_dynamic, per_channel: true, exclude_nodes: []}}
"""
FULL_TARGET = "name: fuzz-target\nmemory_mb: 1769\narchitecture: x86_64\npackage_type: zip\npython: '3.11'\n"


def full_pipeline_for_target(target: str) -> str:
    """FULL_PIPELINE deploying to configs/targets/`target`.yaml instead: a good pipeline for trying target files."""
    return FULL_PIPELINE.replace(f"\ntarget: {FULL_PIPELINE_TARGET}\n", f"\ntarget: {target}\n", 1)


class Chooser:
    """Where mutations get their choices: a seeded random.Random (bench) or Hypothesis's `data.draw` (tests)."""

    def __init__(self, choice: Callable[[list], object], text: Callable[[], str]):
        self.choice, self.text = choice, text

    @classmethod
    def seeded(cls, rng: random.Random) -> "Chooser":
        alphabet = [":", "-", " ", "\n", "\t", "{", "}", "[", "]", "'", '"', "#", "&", "*", "!", "%", "|", ">",
                    "?", ",", "a", "0", "é", "\x00", "\ufeff", "\u2028", "\x85", "🎬", "\\"]
        return cls(rng.choice, lambda: "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 12))))


JUNK_VALUES = [None, 0, -1, 1.5, 10**30, float("inf"), True, "", "x", "../../outside", "/abs/path", "🎬", "a\nb",
               [], [1, "a"], {}, {"a": 1}, {"kind": "export_onnx"}, "2020-01-01", "0x1F", "!!python/object", "~",
               "hf:org/model", "..", ".", "stages", 17, "17", "null"]
TEXT_CHUNKS = ["\n", "  ", "\t", ": ", "- ", "{", "}", "[", "]", '"', "'", "&a ", "*a", "!!python/object/apply:os.system "
               "['touch pwned'] ", "!!binary ", "? [a, b]\n", "<<: *x\n", "%YAML 1.1\n", "---\n", "...\n", "\x00",
               "\ufeff", "\u2028", "\x85", "\r", "name: dup\n", "stages: []\n", "é", "🎬", "#", "|\n", ">\n"]


def key_paths(doc, prefix=()) -> list[tuple]:
    """Every key path in a parsed document (dict keys and list indices), parents before children."""
    out = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out.append(prefix + (k,))
            out += key_paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out.append(prefix + (i,))
            out += key_paths(v, prefix + (i,))
    return out


def container_of(doc, path):
    """The dict or list holding the last key of `path`."""
    for key in path[:-1]:
        doc = doc[key]
    return doc


def mutate_doc(doc: dict, c: Chooser) -> tuple[dict, str]:
    """One structural mutation of a parsed pipeline or target file: drop, rename, retype, insert, wrap."""
    doc = copy.deepcopy(doc)
    if not isinstance(doc, dict) or not doc:  # nothing left to mutate: the file becomes junk
        return c.choice(JUNK_VALUES), "replace the whole file"
    path = c.choice(key_paths(doc))
    parent, key = container_of(doc, path), path[-1]
    op = c.choice(["drop", "rename", "junk", "insert", "wrap-list", "wrap-dict", "stringify", "duplicate-stage",
                   "empty-container"])
    where = ".".join(map(str, path))
    if op == "drop":
        del parent[key]
    elif op == "rename" and isinstance(parent, dict):
        new = c.choice([key + "x", key.upper(), key.replace("_", "-"), key[:-1], c.text(), "kind", "name"]) \
            if isinstance(key, str) else c.text()
        parent[new] = parent.pop(key)
    elif op == "junk":
        parent[key] = c.choice(JUNK_VALUES)
    elif op == "insert":
        target = parent[key] if isinstance(parent[key], dict) else parent
        if isinstance(target, dict):
            target[c.choice([c.text(), "extra", "kind", "name", "path", "opset", "fallback"])] = c.choice(JUNK_VALUES)
        else:
            target.insert(0, c.choice(JUNK_VALUES))
    elif op == "wrap-list":
        parent[key] = [parent[key]]
    elif op == "wrap-dict":
        parent[key] = {"value": parent[key]}
    elif op == "stringify":
        parent[key] = str(parent[key])
    elif op == "duplicate-stage" and isinstance(doc.get("stages"), list) and doc["stages"]:
        doc["stages"].append(copy.deepcopy(c.choice(doc["stages"])))
    elif op == "empty-container":
        parent[key] = type(parent[key])() if isinstance(parent[key], (dict, list)) else None
    return doc, f"{op} {where}"


def mutate_text(text: str, c: Chooser) -> tuple[str, str]:
    """One textual mutation: insert a chunk (YAML syntax, tags, odd characters), delete a span, duplicate a
    line, cut the file short, or swap indentation for a tab."""
    lines = text.splitlines(keepends=True) or [""]
    op = c.choice(["insert", "delete", "duplicate-line", "truncate", "tab-indent", "swap-lines"])
    pos = c.choice(list(range(len(text) + 1)))
    if op == "insert":
        chunk = c.choice(TEXT_CHUNKS + [c.text()])
        return text[:pos] + chunk + text[pos:], f"insert {chunk!r} at {pos}"
    if op == "delete":
        end = min(len(text), pos + c.choice([1, 2, 5, 20, 80]))
        return text[:pos] + text[end:], f"delete {pos}:{end}"
    if op == "truncate":
        return text[:pos], f"truncate at {pos}"
    i = c.choice(list(range(len(lines))))
    if op == "duplicate-line":
        return "".join(lines[: i + 1] + [lines[i]] + lines[i + 1:]), f"duplicate line {i + 1}"
    if op == "tab-indent":
        stripped = lines[i].lstrip(" ")
        return "".join(lines[:i] + ["\t" + stripped] + lines[i + 1:]), f"tab-indent line {i + 1}"
    j = c.choice(list(range(len(lines))))
    lines[i], lines[j] = lines[j], lines[i]
    return "".join(lines), f"swap lines {i + 1} and {j + 1}"


def dump_yaml(doc) -> str:
    """A (mutated) document back to YAML text, keys in their order, Unicode as is."""
    import yaml

    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


def judge(rc: int, out: str, err: str, named: tuple[Path, ...], wrote: bool) -> str:
    """'valid', 'refused' (exit 2, one line naming one of the files, nothing on stdout), or what is wrong."""
    if wrote:
        return "wrote something"
    if rc == 0:
        return "valid" if err == "" else f"exit 0 with stderr {err[:200]!r}"
    if rc != 2:
        return f"exit {rc}: {err[-300:]!r}"
    if out or not err.endswith("\n") or len(err.splitlines()) != 1 or err.count("\n") != 1:
        return f"not one line: {err[:300]!r}"
    if not re.match(rf"lambdaslim: error: ({'|'.join(re.escape(str(f)) for f in named)})(:\d+)?: .", err):
        return f"does not name the file: {err[:300]!r}"
    return "refused"


def snapshot(folder: Path, skip: set[str] = frozenset()) -> dict[str, int]:
    """Every path below folder with its size (a folder: -1), but the files named in skip."""
    return {str(p.relative_to(folder)): (p.stat().st_size if p.is_file() else -1)
            for p in folder.rglob("*") if str(p.relative_to(folder)) not in skip}
