"""The handler's dependency closure per artifact format: which installed distributions it needs and their bytes."""
from __future__ import annotations

from functools import lru_cache
from importlib import metadata

from packaging.requirements import Requirement

from lambdaslim.packaging.slim import is_pruned

# What a deployed handler installs for each artifact format: (distribution, with its dependencies).
# tokenizers goes in without huggingface-hub: the handler reads tokenizer.json and never downloads.
# onnxruntime goes in without its declared dependencies: importing it needs numpy only (flatbuffers,
# packaging, protobuf serve its offline tools). Powertools is the handler's logging and metrics.
HANDLER_DISTRIBUTIONS = {
    "onnx": (("onnxruntime", False), ("numpy", True), ("tokenizers", False), ("aws-lambda-powertools", True)),
    "pytorch": (("torch", True), ("transformers", True)),
}


@lru_cache(maxsize=None)
def handler_bytes(fmt: str) -> int:
    """Installed size of the handler's dependency closure for this format, less what packages leave out
    (lambdaslim.packaging.slim), measured on this machine; Lambda's manylinux wheels of the same versions
    are within a few percent."""
    dists, _ = handler_closure(fmt)
    return sum(f.size or 0 for d in dists for f in d.files or []
               if not str(f).startswith("..") and not is_pruned(str(f)))


def handler_closure(fmt: str) -> tuple[list[metadata.Distribution], list[str]]:
    """The installed distributions a handler of this format needs, and the names not installed here."""
    seen: set[str] = set()
    todo = list(HANDLER_DISTRIBUTIONS[fmt])
    found, missing = [], []
    while todo:
        name, with_deps = todo.pop()
        name = name.lower().replace("_", "-")
        if name in seen:
            continue
        seen.add(name)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            missing.append(name)
            continue
        found.append(dist)
        for req in dist.requires or [] if with_deps else []:
            r = Requirement(req)
            if r.marker is None or r.marker.evaluate({"extra": ""}):
                todo.append((r.name, True))
    return sorted(found, key=lambda d: d.metadata["Name"].lower()), missing
