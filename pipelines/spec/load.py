"""Read a pipeline file and its target: strict YAML, then the schema, then the checks, then variants."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import yaml
from pydantic import ValidationError

from lambdaslim.aws.targets import LambdaTarget
from lambdaslim.spec.checks import check_semantics
from lambdaslim.spec.errors import SpecError, first_error, located
from lambdaslim.spec.models import PipelineSpec
from lambdaslim.spec.pipeline import Pipeline, project_root
from lambdaslim.spec.variants import expand_variants

def load_pipeline(file: str | Path) -> Pipeline:
    file = Path(file)
    data, text = _read_yaml(file)
    try:
        spec = PipelineSpec.model_validate(data)
    except ValidationError as e:
        raise SpecError(first_error(file, text, e)) from None
    root = project_root(file.resolve())
    target_file = _target_file(spec.target, root)
    if not target_file.is_file():
        raise SpecError(located(file, text, ("target",), f"no target file {target_file} (looked in configs/targets/)"))
    tdata, ttext = _read_yaml(target_file)
    try:
        target = LambdaTarget.model_validate(tdata)
    except ValidationError as e:
        raise SpecError(first_error(target_file, ttext, e)) from None
    pipeline = Pipeline(spec, file, root, target, target_file)
    check_semantics(pipeline, text)
    if spec.variants:
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
