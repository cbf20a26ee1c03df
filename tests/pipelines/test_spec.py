"""The pipeline file: every bad input is refused with exit code 2 and one line naming file, YAML path
and problem, before anything is written; good files validate.

The bad-input corpus lives in bad_pipelines/ and bad_targets/. Each file starts with

    # expect: <yaml.path>: <substring of the problem>

where <yaml.path> is `-` for problems with the file itself (syntax, empty, not a mapping, not text),
whose messages carry no YAML path. A line holding `# <-` is the line the error must point at.
Relative paths in corpus files refer to a project laid out like lambdaslim.testing.tiny.write_tiny_project
makes it (models/tiny, data/eval.tsv, data/calib.tsv, configs/targets/x86-1769mb-zip.yaml).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from lambdaslim.cli import main
from lambdaslim.spec.errors import SpecError
from lambdaslim.spec.load import load_pipeline
from lambdaslim.spec.pipeline import project_root
from lambdaslim.testing.tiny import write_tiny_project

HERE = Path(__file__).parent
REPO = HERE.parent.parent
BAD_PIPELINES = sorted((HERE / "bad_pipelines").glob("*.yaml"))
BAD_TARGETS = sorted((HERE / "bad_targets").glob("*.yaml"))
EXPECT = re.compile(r"# expect: (?P<path>\S+?): (?P<substring>.+)")
MARK = "# <-"

# A valid pipeline for the tiny project, with relative paths; a bad target file is tried through it.
GOOD = """name: {name}
model:
  path: models/tiny
  label_names: [negative, positive]
data:
  eval: {{path: data/eval.tsv}}
  calibration: {{path: data/calib.tsv}}
  max_length: 32
target: {target}
{extra}stages:
{stages}"""
ONE_STAGE = "  - kind: export_onnx\n"
ALL_STAGES = "  - kind: export_onnx\n  - kind: optimize_onnx\n  - kind: quantize_dynamic\n"


def good_pipeline(name: str = "good", target: str = "x86-1769mb-zip", extra: str = "", stages: str = ONE_STAGE) -> str:
    return GOOD.format(name=name, target=target, extra=extra, stages=stages)


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """A fresh project like write_tiny_project makes; the model folder only needs a config.json to validate.
    The working directory is the project, so a stray relative write (mlflow.db, artifacts/) would land in it."""
    root = tmp_path.resolve() / "project"
    model = root / "models" / "tiny"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    write_tiny_project(root, ONE_STAGE, name="tiny", model_dir=model)
    monkeypatch.chdir(root)
    return root


def snapshot(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def validate(file: Path, capsys) -> tuple[int, str, str]:
    rc = main(["validate", str(file)])
    out, err = capsys.readouterr()
    return rc, out, err


# ---------------------------------------------------------------------------------------------- the corpus


@dataclass(frozen=True)
class Case:
    id: str
    kind: str  # pipeline | target | missing | directory
    content: bytes | None
    path: str  # YAML path, or "-" for file-level problems
    substring: str
    line: int | None  # the line the error must point at (from the `# <-` mark)


def corpus_case(file: Path, kind: str) -> Case:
    text = file.read_text()
    first = text.splitlines()[0]
    m = EXPECT.fullmatch(first)
    assert m, f"{file.name}: first line must be '# expect: <yaml.path>: <substring>', got {first!r}"
    marked = [i for i, line in enumerate(text.splitlines(), 1) if MARK in line]
    assert len(marked) <= 1, f"{file.name}: more than one {MARK!r} mark"
    return Case(f"{file.parent.name}/{file.stem}", kind, text.encode(), m["path"], m["substring"],
                marked[0] if marked else None)


GENERATED = [
    # Binary content is written here rather than committed.
    Case("generated/binary-not-utf8", "pipeline", b"# a binary file\nname: \xff\xfe\x00\x01\x80\n", "-",
         "not a text file (invalid UTF-8)", None),
    Case("generated/utf16-text", "pipeline", good_pipeline().encode("utf-16"), "-", "invalid UTF-8", None),
    Case("generated/no-such-file", "missing", None, "-", "no such file", None),
    Case("generated/directory", "directory", None, "-", "is a directory, not a YAML file", None),
]
CASES = ([corpus_case(f, "pipeline") for f in BAD_PIPELINES] + [corpus_case(f, "target") for f in BAD_TARGETS]
         + GENERATED)


def test_corpus_is_complete():
    assert len(BAD_PIPELINES) >= 16 and len(BAD_TARGETS) >= 4
    assert len({c.id for c in CASES}) == len(CASES)
    assert sum(c.line is not None for c in CASES) >= 20, "most corpus files should mark their error line"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input_is_refused_with_one_line(case: Case, project: Path, capsys):
    pipeline = project / "configs" / "pipelines" / "under-test.yaml"
    named = pipeline  # the file the error line must name
    if case.kind == "pipeline":
        pipeline.write_bytes(case.content)
    elif case.kind == "target":
        named = project / "configs" / "targets" / "bad-target.yaml"
        named.write_bytes(case.content)
        pipeline.write_text(good_pipeline(target="bad-target"))
    elif case.kind == "directory":
        pipeline.mkdir()
    before = snapshot(project.parent)

    rc, out, err = validate(pipeline, capsys)

    assert rc == 2, f"exit code {rc}; stdout={out!r} stderr={err!r}"
    assert out == ""
    assert err.endswith("\n") and len(err.splitlines()) == 1 and err.count("\n") == 1, f"not one line: {err!r}"
    m = re.fullmatch(rf"lambdaslim: error: {re.escape(str(named))}(?::(?P<line>\d+))?: (?P<rest>.*)\n", err)
    assert m, f"error line does not start with the file {named}: {err!r}"
    if case.path == "-":
        problem = m["rest"]
    else:
        assert m["rest"].startswith(f"{case.path}: "), f"expected YAML path {case.path!r}: {err!r}"
        problem = m["rest"][len(case.path) + 2:]
    assert case.substring in problem, f"expected {case.substring!r} in the problem: {err!r}"
    if case.line is not None:
        assert m["line"] == str(case.line), f"expected line {case.line}: {err!r}"
    # Nothing was written: no run folder, no tracking database, no stray file anywhere around the project.
    assert snapshot(project.parent) == before
    assert not (project / "artifacts").exists() and not (project / "mlflow.db").exists()
    assert not (project.parent / "elsewhere").exists()


# ------------------------------------------------------------------------------------------ good files


def test_tiny_project_pipeline_validates(project: Path, capsys):
    file = project / "configs" / "pipelines" / "tiny.yaml"
    before = snapshot(project.parent)
    rc, out, err = validate(file, capsys)
    assert (rc, err) == (0, "")
    assert f"{file}: ok" in out and "pipeline 'tiny', 1 stage(s): export_onnx" in out
    assert "target x86-1769mb-zip: 1769 MB x86_64 zip" in out
    assert snapshot(project.parent) == before


@pytest.mark.parametrize("extra, stages, names", [
    ("", ALL_STAGES, ["export_onnx", "optimize_onnx", "quantize_dynamic"]),
    ("gates:\n  accuracy: {metric: macro_f1, max_drop: 0.02, relative: true}\n  latency_p95_ms: 25\n"
     "benchmark: {latency_runs: 200, warmup_runs: 1}\nobjective: size\n", ONE_STAGE, ["export_onnx"]),
    ("artifacts_dir: build/artifacts\n", ONE_STAGE, ["export_onnx"]),
    # The same technique twice with explicit, distinct names.
    ("", "  - kind: export_onnx\n  - {kind: optimize_onnx, name: opt-basic, level: 1}\n"
         "  - {kind: optimize_onnx, name: opt-all, level: 99}\n", ["export_onnx", "opt-basic", "opt-all"]),
], ids=["all-stages", "all-sections", "nested-artifacts-dir", "named-stages"])
def test_good_variants_validate(project: Path, capsys, extra, stages, names):
    file = project / "configs" / "pipelines" / "variant.yaml"
    file.write_text(good_pipeline("variant", extra=extra, stages=stages))
    rc, out, err = validate(file, capsys)
    assert (rc, err) == (0, ""), err
    assert " -> ".join(names) in out
    assert load_pipeline(file).stage_names() == names


def test_target_given_as_a_path_validates(project: Path, capsys):
    file = project / "configs" / "pipelines" / "by-path.yaml"
    file.write_text(good_pipeline(target="configs/targets/x86-1769mb-zip.yaml"))
    assert validate(file, capsys)[0] == 0
    assert load_pipeline(file).target_file == project / "configs" / "targets" / "x86-1769mb-zip.yaml"


def test_calibration_may_be_omitted(project: Path):
    file = project / "configs" / "pipelines" / "no-calib.yaml"
    file.write_text(good_pipeline().replace("  calibration: {path: data/calib.tsv}\n", ""))
    assert load_pipeline(file).spec.data.calibration is None


REPO_PIPELINES = sorted((REPO / "configs" / "pipelines").glob("*.yaml"))


@pytest.mark.parametrize("file", REPO_PIPELINES, ids=lambda f: f.name)
def test_repo_pipelines_validate(file: Path, capsys):
    data = yaml.safe_load(file.read_text())
    root = project_root(file.resolve())
    model = root / data["model"]["path"]
    if not (model / "config.json").is_file():
        pytest.skip(f"{model} is produced by `dvc repro`")
    for split in ("eval", "calibration", "train"):
        s = (data.get("data") or {}).get(split)
        if s and not (root / s["path"]).is_file():
            pytest.skip(f"{root / s['path']} is produced by `dvc pull`")
    rc, out, err = validate(file, capsys)
    assert (rc, err) == (0, "")
    assert f"{file}: ok" in out


def test_there_is_a_repo_pipeline():
    assert REPO_PIPELINES, "configs/pipelines/ holds no pipeline file"


# ------------------------------------------------------------------------------------------ line numbers


@pytest.mark.parametrize("body, path, line", [
    # An error inside a flow mapping points at its key.
    (good_pipeline(extra="gates: {accuracy: {max_drop: -1}}\n"), "gates.accuracy.max_drop", 10),
    # Comments and blank lines count; a stage error points into the right list item.
    (good_pipeline(stages="  # first\n\n  - kind: export_onnx\n  - kind: optimize_onnx\n\n"
                          "  - kind: quantize_dynamic\n    weight_type: int4\n"), "stages[2].weight_type", 17),
    # A missing nested key points at its parent mapping.
    (good_pipeline().replace("  eval: {path: data/eval.tsv}\n", "  eval: {text_column: sentence}\n"),
     "data.eval.path", 6),
    # Semantic errors (after the schema) point at their line too.
    (good_pipeline(extra="\n\nartifacts_dir: /\n"), "artifacts_dir", 12),
], ids=["flow-mapping", "third-stage", "missing-nested-key", "semantic"])
def test_error_line_numbers(project: Path, body, path, line):
    file = project / "configs" / "pipelines" / "lines.yaml"
    file.write_text(body)
    with pytest.raises(SpecError) as e:
        load_pipeline(file)
    assert str(e.value).startswith(f"{file}:{line}: {path}: "), str(e.value)


def test_missing_top_level_key_has_no_line(project: Path):
    file = project / "configs" / "pipelines" / "no-data.yaml"
    data = "data:\n  eval: {path: data/eval.tsv}\n  calibration: {path: data/calib.tsv}\n  max_length: 32\n"
    assert data in good_pipeline()
    file.write_text(good_pipeline().replace(data, ""))
    with pytest.raises(SpecError) as e:
        load_pipeline(file)
    assert str(e.value) == f"{file}: data: required key is missing"


def test_more_errors_are_counted_on_the_same_line(project: Path):
    file = project / "configs" / "pipelines" / "many.yaml"
    file.write_text(good_pipeline(extra="bogus: 1\nobjective: speed\n"))
    with pytest.raises(SpecError) as e:
        load_pipeline(file)
    msg = str(e.value)
    assert msg.endswith("(and 1 more)") and "\n" not in msg


# ------------------------------------------------------------------------------------------ stage names


@pytest.mark.parametrize("stages, names", [
    (ALL_STAGES, ["export_onnx", "optimize_onnx", "quantize_dynamic"]),
    ("  - kind: export_onnx\n  - kind: optimize_onnx\n  - kind: optimize_onnx\n  - kind: quantize_dynamic\n"
     "  - kind: quantize_dynamic\n  - kind: quantize_dynamic\n",
     ["export_onnx", "optimize_onnx", "optimize_onnx_2",
      "quantize_dynamic", "quantize_dynamic_2", "quantize_dynamic_3"]),
    ("  - kind: export_onnx\n  - kind: optimize_onnx\n  - {kind: optimize_onnx, name: fast}\n  - kind: optimize_onnx\n",
     ["export_onnx", "optimize_onnx", "fast", "optimize_onnx_2"]),
    ("  - {kind: export_onnx, name: onnx}\n  - {kind: quantize_dynamic, name: int8}\n", ["onnx", "int8"]),
], ids=["distinct", "repeated-kinds", "named-among-repeats", "all-named"])
def test_stage_names_suffix_repeated_kinds(project: Path, stages, names):
    file = project / "configs" / "pipelines" / "names.yaml"
    file.write_text(good_pipeline(stages=stages))
    assert load_pipeline(file).stage_names() == names


# ------------------------------------------------------------------------------------------ relative paths


@pytest.mark.parametrize("marker, is_dir", [("dvc.yaml", False), ("pyproject.toml", False), (".git", True)])
def test_project_root_is_the_nearest_marked_folder(tmp_path: Path, marker: str, is_dir: bool):
    outer = tmp_path.resolve() / "outer"
    inner = outer / "inner"
    file = inner / "configs" / "pipelines" / "deep" / "p.yaml"
    file.parent.mkdir(parents=True)
    file.write_text("{}")
    for folder in (outer, inner):
        (folder / marker).mkdir() if is_dir else (folder / marker).write_text("")
    assert project_root(file) == inner
    (inner / marker).rmdir() if is_dir else (inner / marker).unlink()
    assert project_root(file) == outer


def test_project_root_falls_back_to_the_files_folder(tmp_path: Path):
    file = tmp_path.resolve() / "loose" / "p.yaml"
    file.parent.mkdir()
    file.write_text("{}")
    markers = ("dvc.yaml", "pyproject.toml", ".git")
    if any((f / m).exists() for f in file.parents for m in markers):
        pytest.skip("a folder above the temporary directory is marked as a project")
    assert project_root(file) == file.parent


@pytest.mark.parametrize("marker", ["dvc.yaml", "pyproject.toml", ".git"])
def test_relative_paths_resolve_against_the_project_root(project: Path, tmp_path: Path, monkeypatch, marker: str):
    (project / "pyproject.toml").unlink()
    (project / marker).mkdir() if marker == ".git" else (project / marker).write_text("")
    file = project / "configs" / "pipelines" / "sub" / "deep.yaml"
    file.parent.mkdir()
    file.write_text(good_pipeline("deep"))
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # neither the file's folder nor the working directory holds models/ or data/

    p = load_pipeline(file)

    assert p.root == project
    assert p.resolve("data/eval.tsv") == project / "data" / "eval.tsv"
    assert p.resolve(p.spec.model.path) == project / "models" / "tiny"
    assert p.run_dir == project / "artifacts" / "deep"
    assert p.target_file == project / "configs" / "targets" / "x86-1769mb-zip.yaml"
    assert p.resolve("/abs/olute") == Path("/abs/olute")
    assert not (elsewhere / "artifacts").exists() and not (project / "artifacts").exists()


def test_absolute_paths_are_kept(project: Path, tmp_path: Path):
    outside = tmp_path / "outside-model"
    outside.mkdir()
    (outside / "config.json").write_text("{}")
    file = project / "configs" / "pipelines" / "abs.yaml"
    file.write_text(good_pipeline().replace("path: models/tiny", f"path: {outside}")
                    .replace("{path: data/eval.tsv}", f"{{path: {project / 'data' / 'eval.tsv'}}}"))
    p = load_pipeline(file)
    assert p.resolve(p.spec.model.path) == outside
    assert p.resolve(p.spec.data.eval.path) == project / "data" / "eval.tsv"
