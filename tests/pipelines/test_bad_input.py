"""Bad input beyond the corpus: Hypothesis mutates valid pipeline and target files (keys dropped, renamed
or added, values retyped, YAML text cut, spliced and re-indented) and every mutant is either valid
(exit 0) or refused with exactly one line naming the file, exit code 2, no traceback and nothing written.
Also: `lambdaslim run` refuses the corpus like `validate` does (a real CLI process for some), paths in a
pipeline file cannot lead out of the artifact directory, and nothing from a model folder is executed.
"""
from __future__ import annotations

import contextlib
import io
import os
import pickle
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lambdaslim.cli import main
from lambdaslim.spec.errors import SpecError
from lambdaslim.spec.load import load_pipeline
from lambdaslim.testing.tiny import write_tiny_project
from lambdaslim.testing.bad_inputs import (FULL_PIPELINE, FULL_TARGET, Chooser, dump_yaml, judge, mutate_doc,
                                           mutate_text, snapshot)
from lambdaslim.testing.cli_runs import cli, cli_env
from tests.pipelines.test_spec import BAD_PIPELINES, BAD_TARGETS, good_pipeline

FULL, TARGET = FULL_PIPELINE, FULL_TARGET
# LAMBDASLIM_HYPOTHESIS_EXAMPLES=5000 for a longer search; no example database (nothing written to the repo).
PROPERTY = settings(max_examples=int(os.environ.get("LAMBDASLIM_HYPOTHESIS_EXAMPLES", "150")), deadline=None,
                    database=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A project whose model folder only needs a config.json to validate; the working directory while the
    module runs, so a stray relative write would land inside it and be seen."""
    root = tmp_path_factory.mktemp("mutants").resolve() / "project"
    model = root / "models" / "tiny"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    write_tiny_project(root, "  - kind: export_onnx\n", name="tiny", model_dir=model)
    (root / "configs" / "targets" / "fuzz-target.yaml").write_text(TARGET)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        yield root


def refused_or_valid(file: Path, named: tuple[Path, ...], project: Path, command: str = "validate") -> int:
    """Run the CLI on `file`; assert the outcome is valid (0) or a one-line refusal (2) and nothing was written."""
    keep = {str(f.relative_to(project.parent)) for f in named}
    before = snapshot(project.parent, keep)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([command, str(file)])  # any exception other than the refusal escapes and fails the test
    out, err = out.getvalue(), err.getvalue()
    verdict = judge(rc, out, err, named, wrote=snapshot(project.parent, keep) != before)
    assert verdict in ("valid", "refused"), verdict
    assert verdict == "refused" or command != "validate" or f"{file}: ok" in out
    return rc


FULL_DOC = yaml.safe_load(FULL)
TARGET_DOC = yaml.safe_load(TARGET)


def test_the_unmutated_files_are_valid(project):
    file = project / "configs" / "pipelines" / "full.yaml"
    file.write_text(FULL)
    assert refused_or_valid(file, (file,), project) == 0
    file.write_text(good_pipeline("tgt", target="fuzz-target"))
    assert refused_or_valid(file, (file,), project) == 0


def _chooser(data) -> Chooser:
    return Chooser(lambda seq: data.draw(st.sampled_from(list(seq))), lambda: data.draw(st.text(max_size=12)))


@PROPERTY
@given(data=st.data())
def test_mutated_pipeline_structure(project, data):
    c = _chooser(data)
    doc, ops = FULL_DOC, []
    for _ in range(data.draw(st.integers(1, 3))):
        doc, op = mutate_doc(doc, c)
        ops.append(op)
    file = project / "configs" / "pipelines" / "mutant.yaml"
    file.write_text(dump_yaml(doc))
    refused_or_valid(file, (file,), project)


@PROPERTY
@given(data=st.data())
def test_mutated_pipeline_text(project, data):
    c = _chooser(data)
    text = FULL
    for _ in range(data.draw(st.integers(1, 3))):
        text, _ = mutate_text(text, c)
    file = project / "configs" / "pipelines" / "mutant.yaml"
    file.write_bytes(text.encode("utf-8", "surrogatepass"))
    refused_or_valid(file, (file,), project)


@PROPERTY
@given(data=st.data())
def test_mutated_target_file(project, data):
    c = _chooser(data)
    target = project / "configs" / "targets" / "mutant-target.yaml"
    if data.draw(st.booleans()):
        doc, _ = mutate_doc(TARGET_DOC, c)
        target.write_text(dump_yaml(doc))
    else:
        text, _ = mutate_text(TARGET, c)
        target.write_bytes(text.encode("utf-8", "surrogatepass"))
    file = project / "configs" / "pipelines" / "uses-mutant-target.yaml"
    file.write_text(good_pipeline("t", target="mutant-target"))
    refused_or_valid(file, (file, target), project)


@PROPERTY
@given(raw=st.binary(max_size=300))
def test_arbitrary_bytes(project, raw):
    file = project / "configs" / "pipelines" / "bytes.yaml"
    file.write_bytes(raw)
    refused_or_valid(file, (file,), project)


# ------------------------------------------------------------------------------------------ run, not only validate


@pytest.mark.parametrize("bad", BAD_PIPELINES + BAD_TARGETS, ids=lambda f: f"{f.parent.name}/{f.stem}")
def test_run_refuses_the_corpus_before_writing(bad, project):
    file = project / "configs" / "pipelines" / "corpus-run.yaml"
    named = file
    if bad.parent.name == "bad_targets":
        named = project / "configs" / "targets" / "bad-target.yaml"
        named.write_bytes(bad.read_bytes())
        file.write_text(good_pipeline(target="bad-target"))
    else:
        file.write_bytes(bad.read_bytes())
    assert refused_or_valid(file, (file, named), project, command="run") == 2
    assert not (project / "mlflow.db").exists() and not (project / "artifacts").exists()


@pytest.mark.parametrize("name", ["python-object-tag", "stage-name-escapes-run-dir", "duplicate-key", "empty-file"])
def test_cli_process_refuses_with_one_line_and_no_traceback(name, project):
    bad = next(f for f in BAD_PIPELINES if f.stem == name)
    file = project / "configs" / "pipelines" / f"proc-{name}.yaml"
    file.write_bytes(bad.read_bytes())
    before = snapshot(project.parent)
    res = subprocess.run(cli("run", str(file)), cwd=project, env=cli_env(project), capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 2 and res.stdout == ""
    assert len(res.stderr.splitlines()) == 1 and res.stderr.startswith(f"lambdaslim: error: {file}"), res.stderr
    assert snapshot(project.parent) == before and not (project / "pwned").exists()


# ------------------------------------------------------------------------------------------ paths


def test_file_name_cannot_name_a_pipeline_outside_artifacts(project):
    file = project / "configs" / "pipelines" / "...yaml"  # stem '..': artifacts/.. would be the project root
    file.write_text(good_pipeline().replace("name: good\n", ""))
    with pytest.raises(SpecError, match=r"name: the file name would name the pipeline '\.\.'"):
        load_pipeline(file)


def test_symlinked_run_directory_cannot_lead_outside(project, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (project / "artifacts").mkdir(exist_ok=True)
    link = project / "artifacts" / "linked"
    link.symlink_to(outside)
    try:
        file = project / "configs" / "pipelines" / "linked.yaml"
        file.write_text(good_pipeline("linked"))
        with pytest.raises(SpecError, match=r"artifacts_dir: .*linked leads to .*outside, outside the artifact"):
            load_pipeline(file)
    finally:
        link.unlink()
        (project / "artifacts").rmdir()


# ------------------------------------------------------------------------------------------ no code from models


def test_model_needing_its_own_code_is_refused_and_its_code_never_runs(project, tmp_path):
    model = tmp_path / "remote-code-model"
    model.mkdir()
    marker = tmp_path / "code-ran"
    (model / "modeling_evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    (model / "config.json").write_text('{"model_type": "evil", "auto_map": {"AutoConfig": "modeling_evil.EvilConfig",'
                                       ' "AutoModelForSequenceClassification": "modeling_evil.Evil"}}')
    file = project / "configs" / "pipelines" / "remote.yaml"
    file.write_text(good_pipeline("remote").replace("path: models/tiny", f"path: {model}"))
    with pytest.raises(SpecError, match="never runs code shipped with a model"):
        load_pipeline(file)
    assert not marker.exists()


def test_pickled_weights_are_never_unpickled_with_code(tiny_model_dir, tmp_path):
    """A pytorch_model.bin whose pickle would run a command: transformers loads it with weights_only=True
    (through the same call the runner uses), so loading fails and the command never runs."""
    from lambdaslim.compressors import Artifact
    from lambdaslim.measure.predictors import open_predictor

    marker = tmp_path / "pickle-ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    model = tmp_path / "pickled"
    model.mkdir()
    for f in tiny_model_dir.iterdir():
        if f.name != "model.safetensors":
            (model / f.name).write_bytes(f.read_bytes())
    (model / "pytorch_model.bin").write_bytes(pickle.dumps({"bert.embeddings.word_embeddings.weight": Evil()}))
    with pytest.raises(OSError, match="Unable to load weights from pytorch checkpoint file") as e:
        open_predictor(Artifact(model, "pytorch"), 1)
    chain, err = [], e.value
    while err is not None:
        chain.append(err)
        err = err.__cause__ or err.__context__
    assert any(isinstance(x, pickle.UnpicklingError) and "Weights only load failed" in str(x) for x in chain), chain
    assert not marker.exists()


def test_no_code_path_loads_unsafely():
    """YAML only through safe loaders, torch.load only with weights_only=True, never trust_remote_code=True:
    checked over every source file of the engine and the techniques."""
    repo = Path(__file__).resolve().parents[2]
    patterns = {r"yaml\.load\((?![^)]*Loader=_UniqueKeyLoader)": "yaml.load without the safe loader",
                r"yaml\.(unsafe_load|full_load|UnsafeLoader|FullLoader|Loader\b)": "an unsafe YAML loader",
                r"weights_only\s*=\s*False": "torch.load(weights_only=False)",
                r"torch\.load\((?![^)]*weights_only\s*=\s*True)": "torch.load without weights_only=True",
                r"trust_remote_code\s*=\s*True": "trust_remote_code=True",
                r"\bpickle\.loads?\(": "pickle.load"}
    found = []
    for f in sorted([*repo.glob("pipelines/**/*.py"), *repo.glob("compressors/**/*.py")]):
        for i, line in enumerate(f.read_text().splitlines(), 1):
            for pattern, what in patterns.items():
                if re.search(pattern, line.split("#")[0]):
                    found.append(f"{f.relative_to(repo)}:{i}: {what}")
    assert found == []
