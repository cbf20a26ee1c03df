"""A whole tiny pipeline into a real MLflow sqlite store, read back through the MLflow client."""
import json

from mlflow.tracking import MlflowClient

from lambdaslim.cli import main
from lambdaslim.tracking.tracker import BENCHMARK_METRICS
from tests.conftest import STAGES_ALL


def _runs(uri):
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("tiny")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return client, parents, children


def test_run_tracks_parent_and_one_child_per_stage(make_project, mlflow_uri, capsys):
    file = make_project(STAGES_ALL)
    assert main(["run", str(file)]) == 0
    out = capsys.readouterr().out
    assert "[4/4] quantize_dynamic" in out and "best:" in out

    client, parents, children = _runs(mlflow_uri)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    parent = parents[0]
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert sorted(c.info.run_name for c in children) == ["baseline", "export_onnx", "optimize_onnx", "quantize_dynamic"]
    names = [set(c.data.metrics) & set(BENCHMARK_METRICS) for c in children]
    assert all(n == names[0] for n in names) and {"accuracy", "latency_p95_ms", "size_bytes"} <= names[0]
    for c in children:
        assert c.data.tags["gate.accuracy"] in ("pass", "fail")
        assert c.data.tags["gates.passed"] in ("true", "false")
        arts = {a.path for a in client.list_artifacts(c.info.run_id)}
        assert any(p.endswith(".json") for p in arts) and "model" in arts
    export = next(c for c in children if c.info.run_name == "export_onnx")
    assert export.data.params["opset"] == "17" and "stage.max_abs_diff" in export.data.metrics
    assert parent.data.tags["lambdaslim.selected"] != "none"
    assert parent.data.metrics["candidates"] == 4


def test_best_and_dvc_outputs_are_written(make_project, mlflow_uri):
    file = make_project(STAGES_ALL)
    assert main(["run", str(file)]) == 0
    run_dir = file.parents[2] / "artifacts" / "tiny"
    report = json.loads((run_dir / "report.json").read_text())
    best = json.loads((run_dir / "best" / "candidate.json").read_text())
    assert best["stage"] == report["best"] and best["passed"]
    assert (run_dir / "best" / "model.onnx").exists() or (run_dir / "best" / "config.json").exists()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["winner"] == best["stage"] and metrics["candidates"] == 4
    assert metrics["latency_p95_ms"] == best["metrics"]["latency_p95_ms"]
    assert (run_dir / "plots.csv").read_text().count("\n") == 5
    # Selection is by p95 latency among passing candidates (ties within noise go to size, then accuracy).
    from lambdaslim.records import Candidate
    from lambdaslim.select.figures import P95

    passing = [Candidate.from_dict(c) for c in report["candidates"] if c["passed"]]
    fastest, chosen = min(passing, key=P95.cost), Candidate.from_dict(best)
    assert P95.tied(chosen, fastest) or chosen.metrics["latency_p95_ms"] == fastest.metrics["latency_p95_ms"]


def test_rerun_skips_finished_stages(make_project, mlflow_uri, capsys):
    file = make_project(STAGES_ALL)
    assert main(["run", str(file)]) == 0
    stage_dirs = sorted(d for d in (file.parents[2] / "artifacts" / "stages").iterdir() if (d / "stage.json").exists())
    assert len(stage_dirs) == 3
    mtimes = [(d / "stage.json").stat().st_mtime_ns for d in stage_dirs]
    capsys.readouterr()
    assert main(["run", str(file)]) == 0
    assert "cached" in capsys.readouterr().out
    assert [(d / "stage.json").stat().st_mtime_ns for d in stage_dirs] == mtimes
    _, parents, children = _runs(mlflow_uri)
    assert len(parents) == 2 and len(children) == 8
    assert sum(c.data.tags["lambdaslim.cached"] == "true" for c in children) == 3


def test_no_candidate_passes_exits_1_with_table_and_every_run_recorded(make_project, mlflow_uri, capsys):
    # A 1-microsecond p95 ceiling no model can meet.
    file = make_project(STAGES_ALL, gates_yaml="gates:\n  latency_p95_ms: 0.001\n")
    assert main(["run", str(file)]) == 1
    out, err = capsys.readouterr()
    assert "no candidate passed every gate" in err
    for stage in ("baseline", "export_onnx", "optimize_onnx", "quantize_dynamic"):
        assert stage in out
    assert out.count("FAIL") >= 4 and "over by" in out
    _, parents, children = _runs(mlflow_uri)
    assert len(children) == 4 and all(c.data.tags["gate.latency_p95"] == "fail" for c in children)
    assert parents[0].info.status == "FINISHED" and parents[0].data.tags["lambdaslim.selected"] == "none"
    report = json.loads((file.parents[2] / "artifacts" / "tiny" / "report.json").read_text())
    assert report["best"] is None and len(report["candidates"]) == 4
    assert main(["report", str(file.parents[2] / "artifacts" / "tiny")]) == 1


def test_report_prints_the_candidate_table(make_project, mlflow_uri, capsys):
    file = make_project("  - kind: export_onnx\n")
    assert main(["run", str(file)]) == 0
    capsys.readouterr()
    assert main(["report", str(file.parents[2] / "artifacts" / "tiny")]) == 0
    out = capsys.readouterr().out
    assert "export_onnx" in out and "speed-up" in out and "* selected" in out


def test_two_pipelines_share_a_common_prefix(make_project, mlflow_uri, capsys):
    first = make_project("  - kind: export_onnx\n", name="first")
    second = make_project("  - kind: export_onnx\n  - kind: quantize_dynamic\n", name="second")
    assert main(["run", str(first)]) == 0
    capsys.readouterr()
    assert main(["run", str(second)]) == 0
    out = capsys.readouterr().out
    assert "[2/3] export_onnx:" in out and "cached" in out.split("[2/3] export_onnx:")[1].splitlines()[0]
    store = first.parents[2] / "artifacts" / "stages"
    assert sorted(d.name.split("-")[0] for d in store.iterdir()) == ["baseline", "export_onnx", "quantize_dynamic"]
