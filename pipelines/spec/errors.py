"""Spec errors: one line naming the file, the line, the YAML path and what is wrong."""
from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from lambdaslim.compressors.base import TECHNIQUES

# Characters str.splitlines() breaks on: a key, path or target name holding one must not split the message.
_LINE_BREAKS = {c: repr(chr(c))[1:-1] for c in (0x0A, 0x0B, 0x0C, 0x0D, 0x1C, 0x1D, 0x1E, 0x85, 0x2028, 0x2029)}


class SpecError(ValueError):
    """One line: file, YAML path (and line) and what is wrong."""

    def __init__(self, message: str):
        super().__init__(str(message).translate(_LINE_BREAKS))


def first_error(file: Path, text: str, e: ValidationError) -> str:
    errs = e.errors()
    err = errs[0]
    loc = _clean_loc(err["loc"])
    more = f" (and {len(errs) - 1} more)" if len(errs) > 1 else ""
    return located(file, text, loc, describe_error(err, loc)) + more


def _clean_loc(loc: tuple) -> tuple:
    # Pydantic puts the union tag into the path (stages.0.export_onnx.opset); YAML has no such level.
    return tuple(x for i, x in enumerate(loc) if not (i > 0 and isinstance(loc[i - 1], int) and x in TECHNIQUES))


def describe_error(err: dict, loc: tuple) -> str:
    kind, ctx = err["type"], err.get("ctx", {})
    if kind == "extra_forbidden":
        return f"unknown key {loc[-1]!r}"
    if kind == "missing":
        return "required key is missing"
    if kind == "union_tag_invalid":
        return f"unknown stage kind {ctx.get('tag')!r} (known: {', '.join(sorted(TECHNIQUES))})"
    if kind == "union_tag_not_found":
        return f"a stage needs 'kind' (known: {', '.join(sorted(TECHNIQUES))})"
    got = err.get("input")
    shown = repr(got) if not isinstance(got, (dict, list)) else type(got).__name__
    return f"{err['msg'][0].lower()}{err['msg'][1:]} (got {shown})"


def located(file: Path, text: str, loc: tuple, message: str) -> str:
    line = _line_number(text, loc)
    return f"{file}{f':{line}' if line else ''}: {yaml_path(loc)}: {message}"


def yaml_path(loc: tuple) -> str:
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
