"""Variants: several stage chains in one pipeline file, run and compared under one MLflow parent run.

    stages:                          # shared by every variant: run, measured and recorded once
      - kind: export_onnx
      - kind: optimize_onnx
    variants:
      - stages: [{kind: quantize_dynamic}]       # a branch after the shared stages ...
        grid:                                    # ... tried with every combination of these values
          quantize_dynamic:
            per_channel: [true, false]
            op_types: [[MatMul], [MatMul, Attention]]
      - name: static                             # a branch with a name of its own
        stages: [{kind: quantize_static, calibration_samples: 128}]
      - stages: [{kind: convert_fp16}]

gives six chains: `per_channel=true,op_types=MatMul` (and the three other combinations), `static`
and `convert_fp16`. A group holds its own `stages` (a branch), a `grid`, or both; a grid names stages
of its chain (shared ones too) by their stage name, and each field's values as a list (a list-valued
field takes a list of lists). A grid value is checked exactly as if it were written in the stage
itself. A variant is named `<group name>,<grid values>`; without a group name, by its grid values
alone (`field=value`, or `stage.field=value` when two stages share the field), and a group without a
grid by its own stages' names.
"""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter, ValidationError

from lambdaslim.spec.checks import check_chain
from lambdaslim.spec.errors import SpecError, describe_error, located, yaml_path
from lambdaslim.spec.models import StageConfig
from lambdaslim.spec.pipeline import Pipeline, stage_names

MAX_VARIANTS = 64  # every variant is measured in full: more is a sweep for `dvc exp run --queue`, not one file
MAX_NAME = 120  # names a folder (candidates/<variant>/) and an MLflow run
VARIANT_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.,=+-]*$"
_STAGE = TypeAdapter(StageConfig)


@dataclass(frozen=True)
class Variant:
    name: str
    stages: tuple  # the whole chain: the shared stages, then the group's own, grid values applied
    locs: tuple  # each stage's YAML location, for error lines
    values: dict  # "stage.field" -> the value this variant takes on each grid axis


@dataclass(frozen=True)
class _Axis:
    stage: int  # index in the chain
    field: str
    label: str  # in variant names
    values: list


def expand_variants(p: Pipeline, data: dict, text: str) -> tuple[Variant, ...]:
    spec = p.spec
    shared_locs = [("stages", i) for i in range(len(spec.stages))]
    variants: list[Variant] = []
    named: dict[str, tuple] = {}  # variant name -> the group that first gave it
    for g, group in enumerate(spec.variants):
        loc = ("variants", g)
        stages = list(spec.stages) + list(group.stages)
        raws = list(data["stages"]) + list(data["variants"][g].get("stages") or [])
        locs = shared_locs + [loc + ("stages", j) for j in range(len(group.stages))]
        if not group.stages and group.grid is None:
            raise SpecError(located(p.file, text, loc, "a variant needs stages of its own, a grid, or both"))
        check_chain(p, text, stages, locs)
        names = stage_names(stages)
        axes = _axes(p, text, loc, group.grid, stages, raws, names)
        count = _product_size(axes)
        if count > MAX_VARIANTS:
            sizes = " x ".join(str(len(a.values)) for a in axes)
            raise SpecError(located(p.file, text, loc + ("grid",), f"expands to {count} variants ({sizes}); at most "
                                                                 f"{MAX_VARIANTS} in one file"))
        prefix = group.name or ("" if axes else "+".join(names[len(spec.stages):]))
        for combo in itertools.product(*(a.values for a in axes)):
            chain = list(stages)
            for i in {a.stage for a in axes}:
                update = {a.field: v for a, v in zip(axes, combo) if a.stage == i}
                chain[i] = _stage(p, text, loc + ("grid", names[i]), raws[i] | update)
            check_chain(p, text, chain, locs)  # e.g. a *_dir value that is no model folder
            assignments = ",".join(f"{a.label}={_text(v)}" for a, v in zip(axes, combo))
            name = ",".join(x for x in (prefix, assignments) if x)
            where = loc + ("name",) if group.name else loc
            if len(name) > MAX_NAME or not re.fullmatch(VARIANT_NAME, name):
                raise SpecError(located(p.file, text, where, f"variant name {name!r} is longer than {MAX_NAME} "
                                                           f"characters; give the group a shorter name"))
            if name in named:
                hint = "" if group.name else " (give the group a name)"
                raise SpecError(located(p.file, text, where, f"variant name {name!r} is already used by "
                                                           f"{yaml_path(named[name])}; variant names must be unique{hint}"))
            named[name] = loc
            values = {f"{names[a.stage]}.{a.field}": v for a, v in zip(axes, combo)}
            variants.append(Variant(name, tuple(chain), tuple(locs), values))
    if len(variants) > MAX_VARIANTS:
        raise SpecError(located(p.file, text, ("variants",), f"{len(variants)} variants in all; at most {MAX_VARIANTS} "
                                                           f"in one file"))
    return tuple(variants)


def _axes(p: Pipeline, text: str, loc: tuple, grid: dict | None, stages: list, raws: list,
          names: list[str]) -> list[_Axis]:
    if grid is None:
        return []
    loc = loc + ("grid",)
    if not grid:
        raise SpecError(located(p.file, text, loc, "empty grid: name a stage and a list of values for its fields"))
    axes = []
    for stage, fields in grid.items():
        if stage not in names:
            raise SpecError(located(p.file, text, loc + (stage,), f"no stage named {stage!r} in this variant's chain "
                                                                f"(stages: {', '.join(names)})"))
        i = names.index(stage)
        known = type(stages[i]).model_fields
        if not fields:
            raise SpecError(located(p.file, text, loc + (stage,), "no field to vary: give a field and its values"))
        for field, values in fields.items():
            where = loc + (stage, field)
            if field in ("kind", "name"):
                raise SpecError(located(p.file, text, where, f"a grid cannot vary {field!r} (make a branch: a group "
                                                           f"with stages of its own)"))
            if field not in known:
                fields_known = ", ".join(k for k in known if k not in ("kind", "name"))
                raise SpecError(located(p.file, text, where, f"unknown key {field!r} for {stages[i].kind} "
                                                           f"(known: {fields_known})"))
            if not values:
                raise SpecError(located(p.file, text, where, "empty list: a grid axis needs at least one value"))
            for k, v in enumerate(values):
                if v in values[:k]:
                    raise SpecError(located(p.file, text, where + (k,), f"value {v!r} is listed twice"))
                _stage(p, text, where + (k,), raws[i] | {field: v})
            axes.append(_Axis(i, field, field, list(values)))
    fields = [a.field for a in axes]
    return [a if fields.count(a.field) == 1 else _Axis(a.stage, a.field, f"{names[a.stage]}.{a.field}", a.values)
            for a in axes]


def _stage(p: Pipeline, text: str, where: tuple, raw: dict):
    """A stage config from its YAML mapping with grid values put in: validated exactly as written ones."""
    try:
        return _STAGE.validate_python(raw, strict=True)
    except ValidationError as e:
        err = e.errors()[0]
        raise SpecError(located(p.file, text, where, f"{raw.get('kind')}: {describe_error(err, err['loc'][1:])}")) from None


def _product_size(axes: list[_Axis]) -> int:
    n = 1
    for a in axes:
        n *= len(a.values)
    return n


def _text(v: Any) -> str:
    """A grid value as it reads in a variant name: true, 128, MatMul+Attention (one path component)."""
    if isinstance(v, bool):
        text = "true" if v else "false"
    elif v is None:
        text = "none"
    elif isinstance(v, list):
        text = "+".join(_text(x) for x in v) or "empty"
    elif isinstance(v, dict):
        text = "+".join(f"{k}-{_text(x)}" for k, x in v.items()) or "empty"
    else:
        text = str(v)
    return re.sub(r"[^A-Za-z0-9_.=+-]", "_", text)

