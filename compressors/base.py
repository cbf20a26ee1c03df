"""What every technique shares: the artifact it turns into another, its context, and the registry."""
from __future__ import annotations

import hashlib
import inspect
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

from pydantic import BaseModel, ConfigDict, Field

Format = Literal["pytorch", "onnx"]
ONNX_FILE = "model.onnx"


class StageError(RuntimeError):
    """A technique could not produce a valid artifact (a real error, never a failed gate)."""


@dataclass(frozen=True)
class Artifact:
    path: Path
    format: Format

    @property
    def onnx_file(self) -> Path:
        return self.path / ONNX_FILE


@dataclass(frozen=True)
class StageContext:
    """Data a technique may need; never budgets or gates (those belong to the runner)."""

    sample_texts: list[str]  # a few real inputs, e.g. for export checks
    max_length: int
    calibration: object | None = None  # pipelines.data.Split when the pipeline declares one
    threads: int = 1
    cache_dir: Path | None = None  # runner-owned scratch a technique may memoize input-keyed work in
    train: object | None = None  # pipelines.data.Split of data.train, for techniques that train ("train" in uses)
    teacher: "Artifact | None" = None  # the pipeline's own model (the baseline), for distillation
    root: Path | None = None  # project root: relative `*_dir` config fields resolve against it
    work_dir: Path | None = None  # per (input, config, code): survives a kill, so a training stage resumes
    stage_key: str = ""  # digest of (input, config, code); a checkpoint written under another key is ignored

    def resolve(self, path: str) -> Path:
        p = Path(path)
        return p if p.is_absolute() or self.root is None else self.root / p


@dataclass(frozen=True)
class StageResult:
    artifact: Artifact
    info: dict = field(default_factory=dict)  # numeric entries become `stage.*` metrics


class StageConfigBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    # Display name; defaults to the kind (suffixed when repeated). It names files (candidates/NN-<name>.json),
    # so it is one path component: no separator, no leading dot, nothing that could leave the run directory.
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)


class FallbackSpec(BaseModel):
    """Accuracy-aware fallback for a quantizer: the runner (never the stage) keeps the most sensitive
    nodes in fp32, one more per trial, until the accuracy drop is within `max_drop`."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    max_drop: float | None = Field(None, ge=0, description="points vs the baseline; default: the accuracy gate's")
    max_trials: int = Field(8, ge=1, le=200)


@dataclass(frozen=True)
class Technique:
    kind: str
    config_cls: type[StageConfigBase]
    fn: Callable[[StageConfigBase, Artifact, Path, StageContext], StageResult]
    accepts: tuple[Format, ...]
    produces: Format
    uses: tuple[str, ...] = ()  # pipeline data the technique reads: "train" (data.train), "teacher" (the model)

    def uses_for(self, cfg: StageConfigBase) -> tuple[str, ...]:
        """What one stage reads: a config class may narrow (never widen) `uses` with a `uses` property."""
        narrowed = getattr(cfg, "uses", None)
        return self.uses if narrowed is None else tuple(u for u in self.uses if u in narrowed)

    @property
    def code_version(self) -> str:
        """Digest of the technique's module source: editing a technique invalidates its cached outputs."""
        return hashlib.sha256(inspect.getsource(inspect.getmodule(self.fn)).encode()).hexdigest()[:16]


REGISTRY: dict[str, Technique] = {}


USES = ("train", "teacher")


def register(config_cls: type[StageConfigBase], accepts: tuple[Format, ...], produces: Format,
             uses: tuple[str, ...] = ()):
    """Register a technique. Config fields named `*_dir` are local model directories: the runner resolves
    them against the project root and keys the stage's output by their content."""
    kind = config_cls.model_fields["kind"].default
    if not isinstance(kind, str):
        raise TypeError(f"{config_cls.__name__}.kind needs a Literal default naming the technique")
    if set(uses) - set(USES):
        raise ValueError(f"{kind}: unknown uses {sorted(set(uses) - set(USES))} (known: {', '.join(USES)})")

    def wrap(fn):
        if kind in REGISTRY:
            raise ValueError(f"technique kind {kind!r} is already registered by {REGISTRY[kind].fn.__module__}")
        REGISTRY[kind] = Technique(kind, config_cls, fn, tuple(accepts), produces, tuple(uses))
        return fn

    return wrap


def copy_side_files(src: Path, dst: Path, skip: tuple[str, ...] = (".onnx", ".onnx_data", ".data")) -> None:
    """Carry tokenizer and config files along so every artifact is self-contained."""
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file() and not f.name.endswith(skip) and f.name not in ("stage.json",):
            shutil.copy2(f, dst / f.name)
