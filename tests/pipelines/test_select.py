"""`lambdaslim select` across two real tiny runs (dynamic and static int8) into a real MLflow sqlite store."""
import json
import shutil

import pytest
from mlflow.tracking import MlflowClient

from lambdaslim.cli import main
from lambdaslim.select.across_runs import RunInfo, baselines
from lambdaslim.packaging.package import PackageOptions, _pipeline
from lambdaslim.tracking.model_registry import ALIAS
from lambdaslim.testing.tiny import write_tiny_project

PIPELINES = {"dyn": "  - kind: export_onnx\n  - kind: quantize_dynamic\n",
             "static": "  - kind: export_onnx\n  - kind: quantize_static\n    calibration_samples: 32\n"}


@pytest.fixture(scope="module")
def runs(tiny_model_dir, tmp_path_factory):
    """(project root, tracking URI): both pipelines run once in one project, sharing its stage store."""
    root = tmp_path_factory.mktemp("select")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        for name, stages in PIPELINES.items():
            file = write_tiny_project(root, stages, name=name, model_dir=tiny_model_dir)
            assert main(["run", str(file)]) == 0
        yield root, uri


def test_select_picks_across_runs_copies_logs_and_registers(runs, capsys, monkeypatch):
    root, uri = runs
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    out = root / "artifacts" / "selected"
    capsys.readouterr()
    assert main(["select", str(root / "artifacts/dyn"), str(root / "artifacts/static"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    sel = json.loads((out / "selection.json").read_text())
    win = sel["winner"]
    assert f"best: {win['label']} -> {out / 'best'}" in printed and "same baseline model" in printed
    assert win["pipeline"] in PIPELINES and win["pipeline_file"] == f"configs/pipelines/{win['pipeline']}.yaml"
    assert sel["baselines"]["same"] and sel["objective"] == "latency"
    # The shared baseline and export appear once, under the first run, naming the other.
    labels = [r["label"] for r in sel["candidates"]]
    assert labels[:2] == ["dyn/baseline", "dyn/export_onnx"] and len(labels) == 4
    assert sel["shared"] == {"dyn/baseline": ["static"], "dyn/export_onnx": ["static"]}
    reports = {n: json.loads((root / "artifacts" / n / "report.json").read_text()) for n in PIPELINES}
    passing = [c for r in reports.values() for c in r["candidates"] if c["passed"]]
    best = json.loads((out / "best" / "candidate.json").read_text())
    fastest = min(passing, key=lambda c: c["metrics"]["latency_p95_ms"])["metrics"]
    noise = max(0.05 * best["metrics"]["latency_p95_ms"], best["metrics"]["latency_p95_spread_ms"],
                0.05 * fastest["latency_p95_ms"], fastest["latency_p95_spread_ms"])
    assert best["metrics"]["latency_p95_ms"] <= fastest["latency_p95_ms"] + noise + 1e-4  # ties go to size
    assert best["config_digest"] == win["config_digest"] and (out / "best" / "model.onnx").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["winner"] == win["label"] and metrics["runs_without_winner"] == 0
    assert (out / "pareto.csv").is_file() and (out / "pareto.png").is_file()

    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(sel["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["lambdaslim.selected"] == win["label"]
    assert client.get_experiment(run.info.experiment_id).name == "lambdaslim-selection"
    assert {"selection.json", "pareto.png", "pareto.csv", "metrics.json"} <= {a.path for a in client.list_artifacts(run.info.run_id)}
    mv = client.get_model_version_by_alias("lambdaslim-selected", ALIAS)
    assert mv.tags["pipeline"] == win["pipeline"] and mv.tags["selection.runs"] == "dyn,static"
    assert mv.tags["selection.baselines"] == "same" and mv.tags["config_digest"] == win["config_digest"]
    # The version's source is the winner's candidate run in its own pipeline's experiment.
    cand_run = client.get_run(mv.run_id)
    assert cand_run.data.tags["mlflow.parentRunId"] == reports[win["pipeline"]]["mlflow_run_id"]

    # `lambdaslim package artifacts/selected/best` reads the winner's pipeline file from selection.json.
    assert _pipeline(out / "best", PackageOptions()).name == win["pipeline"]
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    assert "selection across dyn, static" in capsys.readouterr().out


def test_runs_from_different_baselines_are_judged_by_their_own_gates(runs, tmp_path, capsys, monkeypatch):
    root, uri = runs
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    other = root / "artifacts" / "static-other-model"
    shutil.copytree(root / "artifacts" / "static", other, ignore=shutil.ignore_patterns(".lock"))
    report = json.loads((other / "report.json").read_text())
    report["pipeline"] = "static-other-model"
    for c in report["candidates"]:  # as if it had started from another model
        c["stage_key"], c["config_digest"] = "other-" + c["stage_key"], "other-" + c["config_digest"]
    (other / "report.json").write_text(json.dumps(report))
    out = tmp_path / "selected"
    assert main(["select", str(root / "artifacts/dyn"), str(other), "--out", str(out), "--objective", "size",
                 "--model-name", "sel-other"]) == 0
    sel = json.loads((out / "selection.json").read_text())
    assert not sel["baselines"]["same"] and "its own run's gate verdicts" in capsys.readouterr().out
    assert sel["objective"] == "size" and sel["shared"] == {} and len(sel["candidates"]) == 6


def test_baselines_note():
    def run(name, digest):
        return RunInfo(dir=None, pipeline=name, mlflow_run_id=None, pipeline_file=None, objective=None,
                       cands=[_baseline(digest)], candidate_runs={})

    assert baselines([run("a", "x"), run("b", "x")])["same"]
    diff = baselines([run("a", "x"), run("b", "y")])
    assert not diff["same"] and diff["digests"] == {"a": "x", "b": "y"}


def _baseline(digest):
    from lambdaslim.records import Candidate

    return Candidate(stage="baseline", kind="baseline", index=0, path="", format="pytorch", size_bytes=1,
                     config_digest=digest, config={})


@pytest.mark.parametrize("args,message", [
    (["artifacts/nowhere"], "no report.json"),
    (["artifacts/dyn", "artifacts/dyn"], "named twice"),
    (["artifacts/dyn", "--model-name", "a/b"], "--model-name 'a/b' must be"),
])
def test_bad_input_is_one_line_and_exit_2(runs, args, message, capsys, monkeypatch):
    root, _ = runs
    monkeypatch.chdir(root)
    assert main(["select", *args, "--out", "artifacts/never"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not (root / "artifacts/never").exists()


def test_runs_that_disagree_on_the_objective_need_one(runs, tmp_path, capsys):
    root, _ = runs
    size_run = tmp_path / "size-run"
    shutil.copytree(root / "artifacts" / "dyn", size_run, ignore=shutil.ignore_patterns(".lock"))
    report = json.loads((size_run / "report.json").read_text())
    report["pipeline"], report["selection"]["objective"] = "size-run", "size"
    (size_run / "report.json").write_text(json.dumps(report))
    assert main(["select", str(root / "artifacts/static"), str(size_run), "--out", str(tmp_path / "o")]) == 2
    assert "disagree on the objective (static: latency, size-run: size)" in capsys.readouterr().err


def test_the_package_of_a_selection_uses_the_winners_pipeline_and_is_attached_to_its_version(runs, tmp_path, capsys,
                                                                                            monkeypatch):
    root, uri = runs
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    out = tmp_path / "selected"  # outside the project: the winner's pipeline file is named whole
    assert main(["select", str(root / "artifacts/dyn"), str(root / "artifacts/static"), "--out", str(out),
                 "--model-name", "pkg-sel"]) == 0
    win = json.loads((out / "selection.json").read_text())["winner"]
    capsys.readouterr()
    assert main(["package", str(out / "best"), "--format", "container", "--deps-from", "venv", "--calls", "20",
                 "--ric-calls", "0", "--no-torch-baseline", "--registry-model", "pkg-sel"]) == 0
    printed = capsys.readouterr().out
    assert f"package {win['pipeline']}/{win['stage']}:" in printed and "registry: attached to pkg-sel version 1" in printed
    client = MlflowClient(tracking_uri=uri)
    mv = client.get_model_version_by_alias("pkg-sel", ALIAS)
    assert mv.tags["package.format"] == "container" and float(mv.tags["package.unzipped_mb"]) > 0
    assert mv.tags["package.deployable"] == "true" and "package.init_ms" in mv.tags
    logged = {a.path for a in client.list_artifacts(mv.run_id, "package")}
    assert {"package/report.json", "package/manifest.json", "package/package-metrics.json"} <= logged
