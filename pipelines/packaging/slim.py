"""Drop what a deployed handler never loads from its installed runtime dependencies.

Stdlib only: copied into container build contexts and run there as `python slim.py DIR`, so the image
holds the same file tree that was verified locally. packaging.closure.handler_bytes uses the same rules, so the
size budget of the compress stage and the package agree.
"""
from __future__ import annotations

import sys
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath

# Directory names pruned wherever they occur: test suites and bytecode caches of the build machine.
PRUNED_DIRS = {"tests", "__pycache__"}
# File suffixes pruned everywhere: type stubs are for editors, never imported.
PRUNED_SUFFIXES = (".pyi",)
# Paths or globs (relative to site-packages) of what ships in wheels but is never loaded at run time;
# a pattern naming a directory drops everything under it.
PRUNED_PATHS = (
    "bin",  # console scripts (f2py, numpy-config, jp.py)
    "numpy/f2py",  # Fortran wrapper generator
    "numpy/distutils",  # build tooling
    "numpy/_pyinstaller",  # PyInstaller hooks
    "numpy/_core/include",  # C headers for building extensions
    "onnxruntime/tools",  # model conversion and inspection scripts
    "onnxruntime/transformers",  # offline graph optimizer for transformer models
    "onnxruntime/quantization",  # offline quantization tooling
    "onnxruntime/capi/libonnxruntime.so.*",  # the C API library; the Python binding links ORT statically
)


def is_pruned(rel: str | PurePosixPath) -> bool:
    """Whether a path relative to site-packages is left out of a package."""
    p = PurePosixPath(rel)
    if p.suffix in PRUNED_SUFFIXES or PRUNED_DIRS.intersection(p.parts[:-1]):
        return True
    prefixes = [PurePosixPath(*p.parts[: i + 1]).as_posix() for i in range(len(p.parts))]
    return any(fnmatchcase(pre, pat) for pat in PRUNED_PATHS for pre in prefixes)


def slim(root: Path) -> int:
    """Delete pruned files under root (a site-packages-like tree); returns the bytes removed."""
    removed = 0
    for f in sorted(root.rglob("*")):
        if (f.is_file() or f.is_symlink()) and is_pruned(f.relative_to(root).as_posix()):
            removed += f.lstat().st_size
            f.unlink()
    for d in sorted((d for d in root.rglob("*") if d.is_dir()), key=lambda d: -len(d.parts)):
        if not any(d.iterdir()):
            d.rmdir()
    return removed


if __name__ == "__main__":
    target = Path(sys.argv[1])
    print(f"slim: removed {slim(target) / 1e6:.1f} MB from {target}")
