"""The handler's runtime dependencies, installed into a package tree for a Lambda platform, and audited.

Two sources, same pins (the versions installed in this venv, so what was benchmarked is what ships):
- "pypi": `pip install --target --platform manylinux... --only-binary=:all: --python-version X.Y`, the
  wheels Lambda's OS and architecture need, whatever this machine is;
- "venv": the installed files of this venv copied as they are: offline and instant, valid only when
  this machine's Python and architecture are the target's (tests use it).
Either way, each wheel's platform tags are read back to find the glibc it needs (audit_glibc).
"""
from __future__ import annotations

import platform
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from lambdaslim.aws import limits as L
from lambdaslim.spec.errors import SpecError
from lambdaslim.packaging.closure import handler_closure

WHEEL_ARCH = {"x86_64": "x86_64", "arm64": "aarch64"}
NEWEST_LAMBDA_GLIBC = max(g for _, g in L.RUNTIME_OS.values())  # no Lambda OS has a newer glibc
MANYLINUX2014_GLIBC = (2, 17)
LEGACY_MANYLINUX = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
_MANYLINUX = re.compile(r"manylinux_(\d+)_(\d+)_(\w+)")
_LEGACY = re.compile(r"(manylinux1|manylinux2010|manylinux2014)_(\w+)")


class PackagingError(SpecError):
    """A package that cannot be built as asked: one line naming the limit or what is missing (exit code 2)."""


@dataclass(frozen=True)
class Pin:
    name: str
    version: str

    def __str__(self) -> str:
        return f"{self.name}=={self.version}"


@dataclass(frozen=True)
class WheelNeed:
    """What one installed wheel asks of the OS: the oldest glibc any of its tags accepts."""

    name: str
    version: str
    tags: tuple[str, ...]
    glibc: tuple[int, int] | None  # None: pure Python, runs anywhere
    portable: bool  # False for a plain linux_* tag: built for one machine, no promise at all

    def describe(self) -> str:
        return f"{self.name} {self.version} ({', '.join(sorted({t.split('-', 2)[-1] for t in self.tags}))})"


def fmt_glibc(v: tuple[int, int]) -> str:
    return f"{v[0]}.{v[1]}"


def runtime_pins(fmt: str = "onnx", extra: tuple[str, ...] = ()) -> list[Pin]:
    """Exact versions of the handler's dependency closure (targets.RUNTIME_DISTRIBUTIONS) plus extras."""
    dists, missing = handler_closure(fmt)
    for name in extra:
        try:
            dists.append(metadata.distribution(name))
        except metadata.PackageNotFoundError:
            missing.append(name)
    if missing:
        raise PackagingError(f"runtime dependencies not installed in this environment: {', '.join(missing)} "
                             f"(pip install -c constraints.txt -e .)")
    return sorted({Pin(d.metadata["Name"], d.version) for d in dists}, key=lambda p: p.name.lower())


def platform_tags(arch: str, glibc: tuple[int, int]) -> list[str]:
    """pip --platform values, most preferred first: every manylinux tag the OS's glibc accepts, newest
    first, then newer ones as a last resort (a wheel picked from those is caught by audit_glibc)."""
    a = WHEEL_ARCH[arch]
    fits = [f"manylinux_2_{m}_{a}" for m in range(glibc[1], MANYLINUX2014_GLIBC[1] - 1, -1)]
    newer = [f"manylinux_2_{m}_{a}" for m in range(glibc[1] + 1, NEWEST_LAMBDA_GLIBC[1] + 1)]
    return fits + [f"manylinux2014_{a}"] + newer


def install_from_pypi(pins: list[Pin], dest: Path, python: str, arch: str, glibc: tuple[int, int]) -> None:
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
           "--no-compile", "--only-binary=:all:", "--implementation", "cp", "--python-version", python,
           "--target", str(dest)]
    for tag in platform_tags(arch, glibc):
        cmd += ["--platform", tag]
    res = subprocess.run(cmd + [str(p) for p in pins], capture_output=True, text=True)
    if res.returncode != 0:
        errors = [line for line in res.stderr.splitlines() if line.startswith("ERROR")] or res.stderr.splitlines()[-1:]
        raise PackagingError(f"pip could not install the runtime for Lambda python{python} {arch}: "
                             f"{' '.join(errors) or f'exit code {res.returncode}'}")


def install_from_venv(names: list[str], dest: Path, python: str | None = None, arch: str | None = None) -> None:
    """Copy the installed files of these distributions into dest, as `pip install --target` lays them out."""
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    if python is not None and python != here:
        raise PackagingError(f"--deps-from venv needs the target's Python: this is {here}, the target is {python}; "
                             f"use --deps-from pypi")
    if arch is not None and WHEEL_ARCH[arch] != platform.machine():
        raise PackagingError(f"--deps-from venv needs the target's architecture: this is {platform.machine()}, "
                             f"the target is {arch}; use --deps-from pypi")
    for name in names:
        dist = metadata.distribution(name)
        base = Path(dist.locate_file(""))
        for f in dist.files or []:
            rel = str(f)
            if rel.startswith("..") or "__pycache__" in f.parts:  # console scripts outside site-packages; caches
                continue
            src, dst = base / rel, dest / rel
            if src.is_file():
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst)


def install_runtime(pins: list[Pin], dest: Path, source: str, python: str, arch: str, glibc: tuple[int, int]) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    if source == "pypi":
        install_from_pypi(pins, dest, python, arch, glibc)
    else:
        install_from_venv([p.name for p in pins], dest, python, arch)


def glibc_of_tag(tag: str, arch: str) -> tuple[int, int] | None | bool:
    """The glibc a platform tag needs; None for 'any'; False when the tag is not for this OS/arch."""
    plat = tag.split("-", 2)[2] if tag.count("-") >= 2 else tag
    if plat == "any":
        return None
    if m := _MANYLINUX.fullmatch(plat):
        return (int(m[1]), int(m[2])) if m[3] == WHEEL_ARCH[arch] else False
    if m := _LEGACY.fullmatch(plat):
        return LEGACY_MANYLINUX[m[1]] if m[2] == WHEEL_ARCH[arch] else False
    return False


def audit_glibc(site: Path, arch: str) -> list[WheelNeed]:
    """Read each installed wheel's tags (dist-info/WHEEL) back: what the tree asks of the OS."""
    needs = []
    for wheel in sorted(site.glob("*.dist-info/WHEEL")):
        meta = metadata.PathDistribution(wheel.parent)
        tags = tuple(line.split(":", 1)[1].strip() for line in wheel.read_text().splitlines()
                     if line.startswith("Tag:"))
        found = [glibc_of_tag(t, arch) for t in tags]
        if any(g is None for g in found):
            needs.append(WheelNeed(meta.metadata["Name"], meta.version, tags, None, True))
            continue
        usable = [g for g in found if g]
        needs.append(WheelNeed(meta.metadata["Name"], meta.version, tags, min(usable) if usable else None,
                               bool(usable)))
    return needs


def glibc_problems(needs: list[WheelNeed], glibc: tuple[int, int], where: str) -> list[str]:
    """Empty when every wheel imports on an OS with this glibc; else one line naming those that will not."""
    bad = sorted((n for n in needs if not n.portable or (n.glibc is not None and n.glibc > glibc)),
                 key=lambda n: (n.portable, n.glibc or (0, 0)), reverse=True)
    if not bad:
        return []
    parts = [f"{n.name} {n.version} needs glibc {fmt_glibc(n.glibc)}" if n.portable
             else f"{n.name} {n.version} has no manylinux wheel for this architecture" for n in bad]
    return [f"{', '.join(parts)}; {where} has glibc {fmt_glibc(glibc)}"]
