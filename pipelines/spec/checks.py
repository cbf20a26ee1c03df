"""Checks a schema cannot express: files exist, formats chain, names are unique, nothing leaves the project."""
from __future__ import annotations

import json
import re
from pathlib import Path

from lambdaslim.compressors import TECHNIQUES
from lambdaslim.spec.errors import SpecError, located, yaml_path
from lambdaslim.spec.model_ref import PACKAGED_MODELS
from lambdaslim.spec.models import NAME_PATTERN
from lambdaslim.spec.pipeline import Pipeline, stage_names

def check_semantics(p: Pipeline, text: str) -> None:
    spec = p.spec
    m = spec.model.path
    if not (m.startswith("hf:") or m in PACKAGED_MODELS):
        d = p.resolve(m)
        if not (d / "config.json").is_file():
            what = "no such directory" if not d.exists() else "not a Hugging Face model directory (no config.json)"
            raise SpecError(located(p.file, text, ("model", "path"), f"{what}: {d}"))
        _check_no_remote_code(p, text, d)
    for split in ("eval", "calibration", "train"):
        s = getattr(spec.data, split)
        if s is not None and not s.path.startswith("hf:") and not p.resolve(s.path).is_file():
            raise SpecError(located(p.file, text, ("data", split, "path"), f"no such file: {p.resolve(s.path)}"))
    cal, ev = spec.data.calibration, spec.data.eval
    local = cal is not None and not cal.path.startswith("hf:") and not ev.path.startswith("hf:")
    if cal is not None and (cal.path == ev.path  # same file under another spelling (./data/x.tsv, absolute) too
                            or (local and p.resolve(cal.path).resolve() == p.resolve(ev.path).resolve())):
        raise SpecError(located(p.file, text, ("data", "calibration", "path"),
                              "calibration must not be the evaluation split (it would leak into the score)"))
    tr = spec.data.train
    if tr is not None and (tr.path == ev.path or (not tr.path.startswith("hf:") and not ev.path.startswith("hf:")
                                                  and p.resolve(tr.path).resolve() == p.resolve(ev.path).resolve())):
        raise SpecError(located(p.file, text, ("data", "train", "path"),
                              "train must not be the evaluation split (the score would measure memorization)"))
    art = p.resolve(spec.artifacts_dir).resolve()
    if not art.is_relative_to(p.root.resolve()):
        raise SpecError(located(p.file, text, ("artifacts_dir",), f"{art} is outside the project root {p.root}"))
    if spec.name is None and not re.fullmatch(NAME_PATTERN, p.file.stem):
        raise SpecError(located(p.file, text, ("name",), f"the file name would name the pipeline {p.file.stem!r}, "
                                                       f"which is not one path component; add name: to the file"))
    for folder in (p.run_dir, p.resolve(spec.artifacts_dir) / "stages"):  # a symbolic link must not lead out
        if not folder.resolve().is_relative_to(art):
            raise SpecError(located(p.file, text, ("artifacts_dir",), f"{folder} leads to {folder.resolve()}, "
                                                                   f"outside the artifact directory {art}"))
    check_chain(p, text, spec.stages, [("stages", i) for i in range(len(spec.stages))])


def check_chain(p: Pipeline, text: str, stages: list, locs: list[tuple]) -> None:
    """One chain of stages from the baseline: formats fit, data exists, names are unique. `locs` are
    the stages' YAML locations, for the error line."""
    fmt = "pytorch"
    names = stage_names(stages)
    for i, st in enumerate(stages):
        tech = TECHNIQUES[st.kind]
        if fmt not in tech.accepts:
            hint = " (put export_onnx before it)" if fmt == "pytorch" else ""
            raise SpecError(located(p.file, text, locs[i] + ("kind",),
                                  f"{st.kind} needs {' or '.join(_article(f) for f in tech.accepts)} model but gets {fmt}{hint}"))
        fmt = tech.produces
        if "train" in tech.uses_for(st) and p.spec.data.train is None:
            raise SpecError(located(p.file, text, locs[i] + ("kind",),
                                  f"{st.kind} trains on data.train, which the pipeline does not declare"))
        for key, value in st:
            if key.endswith("_dir") and isinstance(value, str) and not (p.resolve(value) / "config.json").is_file():
                raise SpecError(located(p.file, text, locs[i] + (key,),
                                      f"not a Hugging Face model directory (no config.json): {p.resolve(value)}"))
    # Repeated kinds get suffixes (stage_names); an explicit name is never renamed, and no two names may clash.
    bases = [st.name or st.kind for st in stages]
    for i, st in enumerate(stages):
        clash = next((j for j in range(i) if names[j] == names[i] or (st.name and bases[j] == st.name)), None)
        if clash is not None:
            loc = locs[i] + ("name",) if st.name else locs[i]
            raise SpecError(located(p.file, text, loc, f"stage name {(st.name or names[i])!r} is already used by "
                                                     f"{yaml_path(locs[clash])}; stage names must be unique"))


def _check_no_remote_code(p: Pipeline, text: str, d: Path) -> None:
    """Models are loaded with transformers' own classes and never with trust_remote_code: a model whose
    architecture exists only as Python code shipped in its folder (auto_map) is refused here, before
    anything would try (and fail, or ask) to import that code."""
    try:
        config = json.loads((d / "config.json").read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SpecError(located(p.file, text, ("model", "path"), f"{d / 'config.json'} is not valid JSON: "
                                                              f"{str(e).splitlines()[0]}")) from None
    if not isinstance(config, dict) or not config.get("auto_map"):
        return
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    if config.get("model_type") not in CONFIG_MAPPING_NAMES:
        raise SpecError(located(p.file, text, ("model", "path"),
                              f"{d} needs code from its own folder (auto_map in config.json, model_type "
                              f"{config.get('model_type')!r} unknown to transformers); lambdaslim never runs code "
                              f"shipped with a model (no trust_remote_code)"))


def _article(fmt: str) -> str:
    return ("an " if fmt[0] in "aeiou" else "a ") + fmt
