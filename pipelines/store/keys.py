"""What a cached result is keyed by: the project code it runs, the libraries that produce it, the data it reads.

A stage's output is reused only when all of these are unchanged, so editing a helper module (the shared
training loop, the ONNX node helpers) invalidates exactly the stages whose technique imports it.
"""
from __future__ import annotations

import ast
import hashlib
import importlib.util
from functools import lru_cache
from importlib import metadata
from pathlib import Path

PROJECT = "lambdaslim"
# Libraries whose version changes what a stage writes (exporters, quantizers, trainers) or what a model scores.
ARTIFACT_LIBRARIES = ("torch", "transformers", "optimum", "optimum-onnx", "onnx", "onnxruntime", "numpy")
# Libraries a measurement runs on: the runtimes and the tokenizer.
RUNTIME_LIBRARIES = ("onnxruntime", "torch", "transformers", "tokenizers", "numpy")


@lru_cache(maxsize=None)
def library_versions(names: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def clear_caches() -> None:
    """Forget digests computed so far (for a process that edits sources, e.g. a test)."""
    module_closure.cache_clear()
    code_digest.cache_clear()
    _FILE_DIGESTS.clear()


def source_file(module: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    return Path(spec.origin) if spec is not None and spec.origin and spec.origin.endswith(".py") else None


def imported_modules(file: Path, project: str = PROJECT) -> set[str]:
    """Project modules a source file imports, at the top or inside functions. `from pkg import name` counts
    as pkg.name when that is a module, else as pkg itself; parent packages are not counted (their
    __init__ imports every technique, which would make every stage depend on every other)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == project}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and node.module.split(".")[0] == project:
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                found.add(sub if source_file(sub) is not None else node.module)
    return found


@lru_cache(maxsize=None)
def module_closure(module: str, project: str = PROJECT) -> tuple[str, ...]:
    """`module` and every module of `project` it imports, transitively, sorted."""
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        file = source_file(name)
        if file is not None:
            todo += sorted(imported_modules(file, project) - seen)
    return tuple(sorted(n for n in seen if source_file(n) is not None))


@lru_cache(maxsize=None)
def code_digest(module: str, project: str = PROJECT) -> str:
    """Digest of the source of `module` and of every project module it imports. Computed once per process:
    a run sees the code it started with."""
    h = hashlib.sha256()
    for name in module_closure(module, project):
        h.update(name.encode() + b"\0" + source_file(name).read_bytes() + b"\0")
    return h.hexdigest()[:16]


_FILE_DIGESTS: dict[tuple, str] = {}


def file_digest(path: str | Path) -> str:
    """sha256 of a file's bytes (memoized per size and mtime); a hub reference digests as its name."""
    if str(path).startswith("hf:"):
        return hashlib.sha256(str(path).encode()).hexdigest()
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _FILE_DIGESTS:
        h = hashlib.sha256()
        with p.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _FILE_DIGESTS[key] = h.hexdigest()
    return _FILE_DIGESTS[key]
