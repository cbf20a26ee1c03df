"""Variants in one pipeline file: a grid and branches after shared stages, each variant a child run of the
pipeline's one MLflow parent run, the shared stages run, measured and recorded once."""
import json

import pytest
from mlflow.tracking import MlflowClient

from lambdaslim.measure import candidate as candidate_mod
from lambdaslim.cli import main
from lambdaslim.records import Candidate
from lambdaslim.run.session import Session
from lambdaslim.select.best import select_best
from lambdaslim.spec.errors import SpecError
from lambdaslim.spec.load import load_pipeline

PREFIX = "  - kind: export_onnx\n  - kind: optimize_onnx\n"
GRID = PREFIX + """variants:
  - stages: [{kind: quantize_dynamic}]
    grid:
      quantize_dynamic:
        per_channel: [true, false]
        op_types: [[MatMul], [MatMul, Gather]]
"""
GRID_NAMES = ["per_channel=true,op_types=MatMul", "per_channel=true,op_types=MatMul+Gather",
              "per_channel=false,op_types=MatMul", "per_channel=false,op_types=MatMul+Gather"]
BRANCHES = """  - kind: export_onnx
variants:
  - name: dynamic
    stages: [{kind: quantize_dynamic, per_channel: true}]
  - stages:
      - kind: optimize_onnx
      - kind: convert_fp16
"""


def _runs(uri):
    """(parent run, {run id: its child runs}) of the one pipeline run in the store."""
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id], max_results=200)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    children: dict[str, list] = {}
    for r in runs:
        children.setdefault(r.data.tags.get("mlflow.parentRunId", ""), []).append(r)
    return parents[0], children


def _stage_dirs(root) -> list[str]:
    store = root / "artifacts" / "stages"
    return sorted(d.name.rsplit("-", 1)[0] for d in store.iterdir() if (d / "stage.json").exists())


def test_a_grid_is_one_child_run_per_variant_and_the_shared_stages_run_once(make_project, mlflow_uri, monkeypatch,
                                                                            capsys):
    measured = []
    real_measure = candidate_mod.measure_all
    monkeypatch.setattr(candidate_mod, "measure_all", lambda a, *args: measured.append(a.path) or real_measure(a, *args))
    file = make_project(GRID)

    assert main(["run", str(file)]) == 0
    out = capsys.readouterr().out
    root, run_dir = file.parents[2], file.parents[2] / "artifacts" / "tiny"

    # Stage outputs: the shared export and optimization once, one quantization per variant.
    assert _stage_dirs(root) == ["export_onnx", "optimize_onnx"] + ["quantize_dynamic"] * 4
    # Benchmarks: the baseline, the two shared stages and the four quantizations, none of them twice.
    assert len(measured) == 7 and len(set(measured)) == 7
    assert out.count("recorded above") == 3 * 3  # baseline, export, optimize in the 2nd to 4th variant

    parent, children = _runs(mlflow_uri)
    top = {r.info.run_name: r for r in children[parent.info.run_id]}
    assert set(top) == {"baseline", "export_onnx", "optimize_onnx", *GRID_NAMES}
    for name in GRID_NAMES:
        variant = top[name]
        assert variant.info.status == "FINISHED" and variant.data.tags["lambdaslim.kind"] == "variant"
        assert variant.data.params["quantize_dynamic.per_channel"] == str("per_channel=true" in name)
        own = children[variant.info.run_id]
        assert [r.info.run_name for r in own] == ["quantize_dynamic"]
        assert own[0].data.tags["lambdaslim.variant"] == name
        assert own[0].data.params["per_channel"] == str("per_channel=true" in name)
        assert variant.data.metrics["accuracy"] == own[0].data.metrics["accuracy"]  # the variant's outcome
    assert all("lambdaslim.variant" not in top[s].data.tags for s in ("baseline", "export_onnx", "optimize_onnx"))
    assert parent.data.metrics["candidates"] == 7

    report = json.loads((run_dir / "report.json").read_text())
    cands = [Candidate.from_dict(c) for c in report["candidates"]]
    assert [c.variant for c in cands] == [None, None, None, *GRID_NAMES]
    assert not any(c.cached for c in cands)
    assert report["best"] == select_best(cands).label  # picked across every variant's candidates
    assert parent.data.tags["lambdaslim.selected"] == report["best"]
    files = sorted(str(f.relative_to(run_dir / "candidates")) for f in (run_dir / "candidates").rglob("*.json"))
    assert files == sorted(["00-baseline.json", "01-export_onnx.json", "02-optimize_onnx.json",
                            *(f"{n}/03-quantize_dynamic.json" for n in GRID_NAMES)])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["winner"] == report["best"] and metrics["candidates"] == 3 + len(GRID_NAMES)
    plots = (run_dir / "plots.csv").read_text().splitlines()
    assert len(plots) == 8 and plots[0].endswith(",variant")


def test_branches_after_a_shared_prefix(make_project, mlflow_uri, capsys):
    file = make_project(BRANCHES)
    assert main(["run", str(file)]) == 0
    root, run_dir = file.parents[2], file.parents[2] / "artifacts" / "tiny"

    assert _stage_dirs(root) == ["convert_fp16", "export_onnx", "optimize_onnx", "quantize_dynamic"]
    parent, children = _runs(mlflow_uri)
    top = {r.info.run_name: r for r in children[parent.info.run_id]}
    assert set(top) == {"baseline", "export_onnx", "dynamic", "optimize_onnx+convert_fp16"}
    assert [r.info.run_name for r in children[top["dynamic"].info.run_id]] == ["quantize_dynamic"]
    fp16 = children[top["optimize_onnx+convert_fp16"].info.run_id]
    assert sorted(r.info.run_name for r in fp16) == ["convert_fp16", "optimize_onnx"]
    assert top["optimize_onnx+convert_fp16"].data.tags["lambdaslim.final_candidate"] == \
        "optimize_onnx+convert_fp16/convert_fp16"
    files = sorted(str(f.relative_to(run_dir / "candidates")) for f in (run_dir / "candidates").rglob("*.json"))
    assert files == ["00-baseline.json", "01-export_onnx.json", "dynamic/02-quantize_dynamic.json",
                     "optimize_onnx+convert_fp16/02-optimize_onnx.json",
                     "optimize_onnx+convert_fp16/03-convert_fp16.json"]

    capsys.readouterr()
    assert main(["report", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "dynamic/quantize_dynamic" in out and "optimize_onnx+convert_fp16/convert_fp16" in out


def test_a_grid_over_a_shared_stage_splits_the_chain_there(make_project):
    file = make_project(PREFIX + "  - kind: quantize_dynamic\nvariants:\n  - grid: {optimize_onnx: {level: [1, 2]}}\n")
    chains = Session.open(file).chains()
    assert [c.variant.name for c in chains] == ["level=1", "level=2"]
    for c in chains:
        assert [(st.name, st.variant) for st in c.steps] == [
            ("baseline", None), ("export_onnx", None), ("optimize_onnx", c.variant.name),
            ("quantize_dynamic", c.variant.name)]
        assert c.steps[2].cfg.level == int(c.variant.name[-1])
    assert chains[0].steps[1].plan == chains[1].steps[1].plan and chains[0].steps[3].plan != chains[1].steps[3].plan


def test_a_pipeline_without_variants_is_one_chain_of_its_own_steps(make_project):
    s = Session.open(make_project(PREFIX))
    [chain] = s.chains()
    assert chain.variant is None and [(st.name, st.variant) for st in chain.steps] == \
        [(st.name, None) for st in s.steps()]


@pytest.mark.parametrize("variants, names", [
    ("  - name: static\n    stages: [{kind: quantize_static}]\n    grid: {quantize_static: {per_channel: [true]}}\n",
     ["static,per_channel=true"]),
    ("  - stages: [{kind: quantize_dynamic}, {kind: quantize_static}]\n    grid:\n"
     "      quantize_dynamic: {per_channel: [true]}\n      quantize_static: {per_channel: [false]}\n",
     ["quantize_dynamic.per_channel=true,quantize_static.per_channel=false"]),
    ("  - stages: [{kind: convert_fp16}]\n  - stages: [{kind: quantize_dynamic, name: int8}]\n",
     ["convert_fp16", "int8"]),
], ids=["group-name-and-grid", "shared-field-name", "branches"])
def test_variant_names(make_project, capsys, variants, names):
    file = make_project(PREFIX + "variants:\n" + variants)
    assert [v.name for v in load_pipeline(file).variants] == names
    assert main(["validate", str(file)]) == 0
    out = capsys.readouterr().out
    assert all(f"variant {n}: export_onnx -> optimize_onnx -> " in out for n in names)


# Beside the corpus in bad_pipelines/: `# <-` marks the line the error must point at.
@pytest.mark.parametrize("variants, path, problem", [
    ("  - grid:\n      optimize_onnx:\n        level: []  # <-\n", "variants[0].grid.optimize_onnx.level",
     "empty list: a grid axis needs at least one value"),
    ("  - stages: [{kind: quantize_dynamic}]\n    grid:\n      quantize_dynamic: {per_channel: true}  # <-\n",
     "variants[0].grid.quantize_dynamic.per_channel", "input should be a valid list (got True)"),
    ("  - stages: [{kind: quantize_dynamic}]\n    grid:\n      quantize_dynamic: {kind: [quantize_static]}  # <-\n",
     "variants[0].grid.quantize_dynamic.kind", "a grid cannot vary 'kind'"),
    ("  - grid: {optimize_onnx: {level: [1, 1]}}  # <-\n", "variants[0].grid.optimize_onnx.level[1]",
     "value 1 is listed twice"),
    ("  - grid: {optimize_onnx: {level: [1]}}\n  - grid: {optimize_onnx: {level: [1, 2]}}  # <-\n", "variants[1]",
     "variant name 'level=1' is already used by variants[0]; variant names must be unique (give the group a name)"),
], ids=["empty-axis", "axis-not-a-list", "varies-kind", "repeated-value", "same-derived-name"])
def test_bad_variants_are_one_line_errors(make_project, variants, path, problem):
    file = make_project(PREFIX + "variants:\n" + variants)
    line = next(i for i, text in enumerate(file.read_text().splitlines(), 1) if "# <-" in text)
    with pytest.raises(SpecError) as e:
        load_pipeline(file)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{file}:{line}: {path}: ") and problem in msg, msg
