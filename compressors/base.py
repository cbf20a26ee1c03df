"""What every technique shares: the artifact it turns into another, its context, and the registry."""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Literal

from pydantic import BaseModel, ConfigDict, Field

Format = Literal["pytorch", "onnx"]
ONNX_FILE = "model.onnx"
ONNX_WEIGHTS = (".onnx", ".onnx_data", ".data")  # an ONNX graph and its external data
# Every kind of weight file: a stage that writes its own weights copies only the rest (tokenizer, config).
WEIGHT_FILES = (".safetensors", ".bin", ".pt") + ONNX_WEIGHTS


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
    calibration: object | None = None  # lambdaslim.data.splits.Split when the pipeline declares one
    threads: int = 1
    cache_dir: Path | None = None  # runner-owned scratch a technique may memoize input-keyed work in
    train: object | None = None  # lambdaslim.data.splits.Split of data.train, for techniques with "train" in uses
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


class NodeSelection(BaseModel):
    """Which graph nodes a quantizer touches, declared once for every quantizer config (mixed in beside
    StageConfigBase), as torchao's `quantize_(model, config, filter_fn)` separates the what from the where.

    A quantizer that mixes this in registers a node lister (`register(..., nodes=...)`): per-node
    sensitivity and the runner's accuracy-aware fallback then work on it by editing `exclude_nodes` and
    `include_nodes` only.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    op_types: list[str] | None = Field(None, description="op types to quantize, e.g. [MatMul, Gemm, Gather]; "
                                                         "None = every type the quantizer supports")
    include_nodes: list[str] | None = Field(None, description="quantize only these nodes (per-node sensitivity)")
    exclude_nodes: list[str] = Field([], description="nodes kept in fp32 (the fallback adds to them)")
    fallback: FallbackSpec | None = Field(None, description="read by the runner only: accuracy-aware fallback")

    def selected(self, nodes: Iterable[str]) -> list[str]:
        """The candidate `nodes` (in their order) that include_nodes and exclude_nodes leave to quantize."""
        return [n for n in nodes if n not in self.exclude_nodes
                and (self.include_nodes is None or n in self.include_nodes)]

    def check_node_names(self, graph_nodes: Iterable[str]) -> None:
        """A misspelt node name would silently quantize everything (or nothing): refuse it in one line."""
        kind = getattr(self, "kind", type(self).__name__)
        names = set(graph_nodes)
        for key, given in (("exclude_nodes", self.exclude_nodes), ("include_nodes", self.include_nodes or [])):
            unknown = [x for x in given if x not in names]
            if unknown:
                raise StageError(f"{kind}: {key} names {len(unknown)} node(s) not in the graph, e.g. {unknown[0]!r}")
        if self.include_nodes is not None and not self.include_nodes:
            raise StageError(f"{kind}: include_nodes is empty; omit it to quantize every supported node")


@dataclass(frozen=True)
class Technique:
    kind: str
    config_cls: type[StageConfigBase]
    fn: Callable[[StageConfigBase, Artifact, Path, StageContext], StageResult]
    accepts: tuple[Format, ...]
    produces: Format
    uses: tuple[str, ...] = ()  # pipeline data the technique reads (USES); the stage is keyed by its content
    # A quantizer's node lister: the nodes `cfg` would quantize in the artifact, after its NodeSelection.
    nodes: Callable[[Artifact, StageConfigBase], list[str]] | None = None

    def uses_for(self, cfg: StageConfigBase) -> tuple[str, ...]:
        """What one stage reads: a config class may narrow (never widen) `uses` with a `uses` property."""
        narrowed = getattr(cfg, "uses", None)
        return self.uses if narrowed is None else tuple(u for u in self.uses if u in narrowed)

    @property
    def code_version(self) -> str:
        """Digest of the technique's module and every project module it imports (the shared training loop,
        the ONNX node helpers): editing any of them invalidates this technique's cached outputs."""
        from lambdaslim.store.keys import code_digest

        return code_digest(self.fn.__module__)


TECHNIQUES: dict[str, Technique] = {}


# What a technique may read besides its input, each keying its stages: data.train, the pipeline's model (a
# teacher), data.calibration, and the context's sample_texts (a few real inputs, e.g. for export checks).
USES = ("train", "teacher", "calibration", "samples")


def register(config_cls: type[StageConfigBase], accepts: tuple[Format, ...], produces: Format,
             uses: tuple[str, ...] = (), nodes: Callable | None = None):
    """Register a technique. Config fields named `*_dir` are local model directories: the runner resolves
    them against the project root and keys the stage's output by their content. A config with NodeSelection
    comes with `nodes`, its node lister, and only such a config does (sensitivity edits its node lists)."""
    kind = config_cls.model_fields["kind"].default
    if not isinstance(kind, str):
        raise TypeError(f"{config_cls.__name__}.kind needs a Literal default naming the technique")
    if set(uses) - set(USES):
        raise ValueError(f"{kind}: unknown uses {sorted(set(uses) - set(USES))} (known: {', '.join(USES)})")
    if issubclass(config_cls, NodeSelection) and nodes is None:
        raise TypeError(f"{kind}: {config_cls.__name__} selects nodes (NodeSelection): register its node lister too")
    if nodes is not None and not issubclass(config_cls, NodeSelection):
        raise TypeError(f"{kind}: a node lister needs a config with NodeSelection (sensitivity edits its node lists)")

    def wrap(fn):
        if kind in TECHNIQUES:
            raise ValueError(f"technique kind {kind!r} is already registered by {TECHNIQUES[kind].fn.__module__}")
        TECHNIQUES[kind] = Technique(kind, config_cls, fn, tuple(accepts), produces, tuple(uses), nodes)
        return fn

    return wrap


def copy_side_files(src: Path, dst: Path, skip: tuple[str, ...] = ONNX_WEIGHTS) -> None:
    """Carry tokenizer and config files along so every artifact is self-contained. `skip`: name endings not
    copied (the weights the stage writes itself; WEIGHT_FILES for a stage that saves a PyTorch model)."""
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        # not the input's stage record, its cached measurements (they describe another artifact) or temporaries
        ours = f.name == "stage.json" or f.name.startswith((".", "bench-"))
        if f.is_file() and not f.name.endswith(skip) and not ours:
            shutil.copy2(f, dst / f.name)
