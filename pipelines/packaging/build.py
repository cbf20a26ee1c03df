"""Assemble a package tree (runtime dependencies + handler.py + model/), then a Lambda zip or a container
build context, and choose between them by Lambda's packaging decision matrix."""
from __future__ import annotations

import compileall
import hashlib
import json
import os
import py_compile
import shutil
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from lambdaslim.aws import limits as L
from lambdaslim.packaging.deps import PackagingError, Pin, fmt_glibc
from lambdaslim.packaging.slim import slim

HERE = Path(__file__).resolve().parent
HANDLER_FILE = HERE / "handler.py"
SLIM_FILE = HERE / "slim.py"
TEMPLATES = HERE / "templates"
MODEL_FILES = ("model.onnx", "tokenizer.json", "config.json")  # what handler.py reads
MODEL_EXTRAS = ("model.onnx_data", "model.onnx.data", "candidate.json")  # external weights; the record
ZIP_ENTRY_TIME = (1980, 1, 1, 0, 0, 0)  # fixed: the same tree gives the same zip bytes (bytecode is hash-based)
MB = 1_000_000


@dataclass(frozen=True)
class Layout:
    """Where a package runs, so which OS (glibc) its dependencies must import on."""

    format: str  # zip | container
    python: str
    arch: str
    os_name: str
    glibc: tuple[int, int]
    base_image: str | None = None
    dockerfile: str | None = None  # template in templates/
    with_ric: bool = False  # awslambdaric inside the image: an OS-only base image has no Python runtime

    @property
    def where(self) -> str:
        what = f"the python{self.python} Lambda runtime" if self.format == "zip" else f"the image {self.base_image}"
        return f"{what} ({self.os_name})"


def zip_layout(python: str, arch: str) -> Layout:
    os_name, glibc = L.RUNTIME_OS[python]
    return Layout("zip", python, arch, os_name, glibc)


def container_layout(python: str, arch: str, needed_glibc: tuple[int, int] | None) -> Layout:
    """The AWS Lambda Python base image when its OS can load the wheels; else the Amazon Linux 2023
    OS-only base image with the same Python from dnf and awslambdaric as entry point."""
    os_name, glibc = L.RUNTIME_OS[python]
    if needed_glibc is None or needed_glibc <= glibc:
        return Layout("container", python, arch, os_name, glibc, L.PYTHON_BASE_IMAGE.format(python=python),
                      "Dockerfile.python")
    if needed_glibc > L.OS_ONLY_GLIBC:
        raise PackagingError(f"the runtime needs glibc {fmt_glibc(needed_glibc)}, newer than any Lambda base image "
                             f"(Amazon Linux 2023 has {fmt_glibc(L.OS_ONLY_GLIBC)})")
    return Layout("container", python, arch, "Amazon Linux 2023", L.OS_ONLY_GLIBC, L.OS_ONLY_BASE_IMAGE,
                  "Dockerfile.al2023", with_ric=True)


def check_model_dir(best_dir: Path) -> dict:
    """The candidate directory holds what the handler reads; returns its config.json."""
    if not best_dir.is_dir():
        raise PackagingError(f"{best_dir}: no such directory (expected artifacts/<pipeline>/best)")
    missing = [f for f in MODEL_FILES if not (best_dir / f).is_file()]
    if missing:
        raise PackagingError(f"{best_dir}: not an ONNX candidate directory, missing {', '.join(missing)}")
    config = json.loads((best_dir / "config.json").read_text())
    if not config.get("id2label"):
        raise PackagingError(f"{best_dir / 'config.json'}: no id2label, so the handler could not name labels")
    return config


def assemble_tree(site: Path, best_dir: Path, dest: Path, python: str) -> bool:
    """dest = slimmed dependencies + handler.py + model/, as Lambda unpacks it into /var/task.
    Returns whether bytecode was compiled (only possible for this interpreter's Python version)."""
    shutil.copytree(site, dest, symlinks=False)
    slim(dest)
    compiled = python == f"{sys.version_info.major}.{sys.version_info.minor}"
    if compiled:
        # /var/task is read-only: without shipped bytecode every cold start compiles every import (~2x init).
        # Unchecked hashes survive the zip's fixed entry times; dependencies never change in place.
        if not compileall.compile_dir(dest, quiet=2, workers=0,
                                      invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH):
            raise PackagingError(f"byte-compiling the runtime dependencies in {dest} failed")
    shutil.copy2(HANDLER_FILE, dest / "handler.py")
    if compiled:  # checked hash: an edited handler.py (e.g. in the console) is recompiled, never stale
        py_compile.compile(str(dest / "handler.py"), doraise=True,
                           invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)
    (dest / "model").mkdir()
    for name in MODEL_FILES + MODEL_EXTRAS:
        if (best_dir / name).is_file():
            shutil.copy2(best_dir / name, dest / "model" / name)
    return compiled


def tree_bytes(root: Path) -> int:
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file())


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_entries(root: Path) -> list[dict]:
    """Manifest rows: every file with its size and sha256, sorted by path."""
    return [{"path": f.relative_to(root).as_posix(), "size": f.stat().st_size, "sha256": sha256_file(f)}
            for f in sorted(p for p in root.rglob("*") if p.is_file())]


def write_zip(tree: Path, zip_path: Path) -> None:
    """Deterministic: sorted entries, fixed times, modes Lambda can read (0644, 0755 for executables)."""
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for f in sorted(p for p in tree.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(f.relative_to(tree).as_posix(), ZIP_ENTRY_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (0o100755 if os.access(f, os.X_OK) else 0o100644) << 16
            with f.open("rb") as src, zf.open(info, "w") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)


def zip_sizes(zip_path: Path) -> tuple[int, int]:
    """(zipped, unzipped) bytes, the unzipped figure read back from the zip's own entries."""
    with zipfile.ZipFile(zip_path) as zf:
        return zip_path.stat().st_size, sum(i.file_size for i in zf.infolist())


def zip_limit_errors(zipped: int, unzipped: int, direct_upload: bool) -> list[str]:
    errs = []
    if unzipped > L.ZIP_UNZIPPED_MB * MB:
        errs.append(f"unzipped size {unzipped / MB:,.1f} MB exceeds Lambda's {L.ZIP_UNZIPPED_MB} MB limit for zip "
                    f"packages (function code plus layers); package it as a container image "
                    f"(--format container, {L.CONTAINER_IMAGE_MB:,} MB)")
    if direct_upload and zipped > L.ZIP_DIRECT_UPLOAD_MB * MB:
        errs.append(f"zipped size {zipped / MB:,.1f} MB exceeds Lambda's {L.ZIP_DIRECT_UPLOAD_MB} MB limit for a "
                    f"zip uploaded directly; upload it through S3 (drop --direct-upload) or use a container image")
    return errs


def decide(requested: str, zipped: int | None, unzipped: int | None, direct_upload: bool,
           glibc_problems: list[str]) -> tuple[str, str]:
    """Lambda's packaging decision matrix: (format, reason). A zip when model plus runtime fit 250 MB
    unzipped (and 50 MB zipped for a direct upload) on the managed runtime; otherwise a container image."""
    if requested == "container":
        return "container", "container image asked for (--format container)"
    if requested == "zip":
        return "zip", "zip asked for (--format zip)"
    if glibc_problems:
        return "container", f"a zip would not import on the managed runtime: {glibc_problems[0]}"
    errs = zip_limit_errors(zipped or 0, unzipped or 0, direct_upload)
    if errs:
        return "container", errs[0].split(";")[0]
    upload = (f" and {zipped / MB:,.1f} MB zipped <= {L.ZIP_DIRECT_UPLOAD_MB} MB for a direct upload"
              if direct_upload else "")
    return "zip", (f"model plus runtime fit a zip: {unzipped / MB:,.1f} MB unzipped <= {L.ZIP_UNZIPPED_MB} MB"
                   f"{upload}; a zip needs no registry and starts from the managed runtime")


def image_bytes_estimate(tree: Path) -> int:
    return L.CONTAINER_BASE_IMAGE_MB * MB + tree_bytes(tree)


def write_container_context(tree: Path, pins: list[Pin], layout: Layout, dest: Path, env: dict[str, str],
                            candidate: str, reason: str) -> list[str]:
    """The Docker build context: Dockerfile, requirements.txt, .dockerignore, slim.py, handler.py, model/."""
    dest.mkdir(parents=True)
    shutil.copytree(tree / "model", dest / "model")
    shutil.copy2(HANDLER_FILE, dest / "handler.py")
    shutil.copy2(SLIM_FILE, dest / "slim.py")
    (dest / "requirements.txt").write_text(
        "# Exact pins of the verified package tree; installed with --no-deps --only-binary=:all:.\n"
        + "".join(f"{p}\n" for p in pins))
    shutil.copy2(TEMPLATES / "dockerignore", dest / ".dockerignore")
    text = (TEMPLATES / layout.dockerfile).read_text()
    glibc = fmt_glibc(layout.glibc)
    for key, value in {"@CANDIDATE@": candidate, "@REASON@": reason, "@BASE_IMAGE@": layout.base_image,
                       "@OS@": layout.os_name, "@GLIBC@": glibc, "@PY@": layout.python,
                       "@ENV@": " ".join(f"{k}={v}" for k, v in env.items())}.items():
        text = text.replace(key, value)
    (dest / "Dockerfile").write_text(text)
    return sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
