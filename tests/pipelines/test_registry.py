"""The selection's Pareto files and the MLflow model registry, on a real tiny run and a real sqlite store."""
import csv
import json
from pathlib import Path

from mlflow.tracking import MlflowClient

from lambdaslim.cli import main
from lambdaslim.records import Verdict
from lambdaslim.records import Candidate
from lambdaslim.tracking.model_registry import ALIAS, attach_package, version_tags
from lambdaslim.tracking.tracker import MlflowTracker

STAGES = "  - kind: export_onnx\n  - kind: quantize_dynamic\n"
GRID = """  - kind: export_onnx
variants:
  - name: dyn
    stages:
      - kind: quantize_dynamic
    grid:
      quantize_dynamic:
        per_channel: [true, false]
"""


def test_run_writes_pareto_logs_it_registers_the_winner_and_a_rerun_moves_the_alias(make_project, mlflow_uri, capsys):
    file = make_project(STAGES)
    assert main(["run", str(file)]) == 0
    run_dir = file.parents[2] / "artifacts" / "tiny"
    report = json.loads((run_dir / "report.json").read_text())
    sel = report["selection"]
    assert sel["selected"] == report["best"] and sel["pipeline_file"] == "configs/pipelines/tiny.yaml"
    assert sel["why"].startswith("passed every gate") and report["best"] in sel["frontier"]
    rows = list(csv.DictReader((run_dir / "pareto.csv").open()))
    assert [r["label"] for r in rows] == ["baseline", "export_onnx", "quantize_dynamic"]
    assert (run_dir / "pareto.png").read_bytes()[:4] == b"\x89PNG" and "(selected)" in (run_dir / "pareto.md").read_text()

    client = MlflowClient(tracking_uri=mlflow_uri)
    parent = report["mlflow_run_id"]
    assert {"pareto.png", "pareto.csv", "pareto.md"} <= {a.path for a in client.list_artifacts(parent)}
    v1 = client.get_model_version_by_alias("tiny", ALIAS)
    best = next(c for c in report["candidates"] if c["stage"] == report["best"])
    assert int(v1.version) == 1 and v1.tags["pipeline"] == "tiny" and v1.tags["stage"] == best["stage"]
    assert v1.tags["format"] == "onnx" and v1.tags["config_digest"] == best["config_digest"]
    assert v1.tags["gates.passed"] == "true" and v1.tags["gate.accuracy"] == "pass"
    assert float(v1.tags["latency_p95_ms"]) == round(best["metrics"]["latency_p95_ms"], 4)
    cand_run = client.get_run(v1.run_id)  # the candidate's own nested run, whose model/ is the source
    assert cand_run.info.run_name == best["stage"] and cand_run.data.tags["mlflow.parentRunId"] == parent
    assert v1.source == f"runs:/{v1.run_id}/model" and client.list_artifacts(v1.run_id, "model")

    capsys.readouterr()
    assert main(["report", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "selection (objective 'latency'" in out and "registered: tiny version 1 (alias lambda-candidate)" in out

    assert main(["run", str(file)]) == 0
    v2 = client.get_model_version_by_alias("tiny", ALIAS)
    assert int(v2.version) == 2 and v2.run_id != v1.run_id
    assert ALIAS not in client.get_model_version("tiny", "1").aliases


def _candidate(tmp_path, digest="d1") -> Candidate:
    model = tmp_path / f"model-{digest}"
    model.mkdir()
    (model / "model.onnx").write_bytes(b"onnx")
    return Candidate(stage="quantize_dynamic", kind="quantize_dynamic", index=2, path=str(model), format="onnx",
                     size_bytes=4, config_digest=digest, config={},
                     metrics={"accuracy": 90.0, "latency_p95_ms": 5.0, "latency_p50_ms": 4.0},
                     gates=[Verdict("accuracy", True, 0.2, 1.0, "pt drop"), Verdict("size", True, 0.1, 150, "MB")])


def test_a_candidate_run_without_its_model_gets_it_logged_before_registering(tmp_path, mlflow_uri):
    tracker = MlflowTracker(mlflow_uri, "reg", tmp_path / "mlartifacts")
    tracker.start_pipeline("reg", {}, {})
    cand = _candidate(tmp_path)
    record = tmp_path / "record.json"
    record.write_text("{}")
    rid = tracker.log_candidate(cand, record, None)  # as with tracking.log_models: false
    client = MlflowClient(tracking_uri=mlflow_uri)
    assert not client.list_artifacts(rid, "model")
    assert tracker.candidate_run(cand) == rid
    reg = tracker.register_candidate("reg", cand, version_tags(cand, "reg", None, "latency"), rid, Path(cand.path))
    assert reg["run_id"] == rid and [a.path for a in client.list_artifacts(rid, "model")] == ["model/model.onnx"]
    mv = client.get_model_version_by_alias("reg", ALIAS)
    assert mv.tags["gate.size.margin"] == "149.9000 MB" and mv.tags["accuracy"] == "90.0000"


def test_a_candidate_this_store_never_tracked_gets_a_run_of_its_own(tmp_path, mlflow_uri):
    tracker = MlflowTracker(mlflow_uri, "sel", tmp_path / "mlartifacts")
    tracker.start_pipeline("select", {}, {})
    cand = _candidate(tmp_path)
    reg = tracker.register_candidate("elsewhere", cand, version_tags(cand, "p", None, "size"), "no-such-run",
                                     Path(cand.path))
    client = MlflowClient(tracking_uri=mlflow_uri)
    run = client.get_run(reg["run_id"])
    assert run.info.run_name == "model-quantize_dynamic" and run.info.status == "FINISHED"
    assert run.data.tags["mlflow.parentRunId"] == tracker.parent_id and client.list_artifacts(reg["run_id"], "model")


def test_a_package_is_attached_to_the_version_holding_its_candidate(tmp_path, mlflow_uri):
    tracker = MlflowTracker(mlflow_uri, "pkg", tmp_path / "mlartifacts")
    tracker.start_pipeline("pkg", {}, {})
    first, second = _candidate(tmp_path, "d1"), _candidate(tmp_path, "d2")
    v1 = tracker.register_candidate("pkg", first, version_tags(first, "pkg", None, "latency"), None, Path(first.path))
    tracker.register_candidate("pkg", second, version_tags(second, "pkg", None, "latency"), None, Path(second.path))
    pkg = tmp_path / "package"
    pkg.mkdir()
    (pkg / "function.zip").write_bytes(b"PK")
    metrics_file = tmp_path / "package-metrics.json"
    metrics = {"format": "zip", "deployable": True, "package_unzipped_bytes": 129_300_000,
               "package_zipped_bytes": 53_400_000, "init_ms": 321.0, "warm_p95_ms": 9.1, "recommended_memory_mb": 1024}
    metrics_file.write_text(json.dumps(metrics))
    client = MlflowClient(tracking_uri=mlflow_uri)
    # The alias is on the second version; the package holds the first candidate: it goes to version 1.
    done = attach_package(client, "pkg", "d1", pkg, metrics_file, metrics)
    assert done["version"] == 1 and done["run_id"] == v1["run_id"]
    tags = client.get_model_version("pkg", "1").tags
    assert tags["package.format"] == "zip" and tags["package.unzipped_mb"] == "129.3"
    assert tags["package.zipped_mb"] == "53.4" and tags["package.recommended_memory_mb"] == "1024"
    assert {a.path for a in client.list_artifacts(v1["run_id"], "package")} == {"package/function.zip",
                                                                               "package/package-metrics.json"}
    assert "package.format" not in client.get_model_version("pkg", "2").tags
    assert attach_package(client, "pkg", "unknown", pkg, metrics_file, metrics) is None
    assert attach_package(client, "no-such-model", "d1", pkg, metrics_file, metrics) is None


def test_a_variant_winner_is_registered_from_its_own_nested_run(make_project, mlflow_uri):
    # objective size: the int8 variants (smaller than the fp32 export) win whatever the timings
    file = make_project(GRID, gates_yaml="objective: size\n")
    assert main(["run", str(file)]) == 0
    report = json.loads((file.parents[2] / "artifacts" / "tiny" / "report.json").read_text())
    sel = report["selection"]
    assert sel["selected"] == report["best"] and report["best"].startswith("dyn,per_channel=")
    assert set(sel["mlflow_runs"]) == {"baseline", "export_onnx", "dyn,per_channel=true/quantize_dynamic",
                                       "dyn,per_channel=false/quantize_dynamic"}
    client = MlflowClient(tracking_uri=mlflow_uri)
    mv = client.get_model_version_by_alias("tiny", ALIAS)
    assert mv.run_id == sel["mlflow_runs"][report["best"]] and mv.tags["variant"] == report["best"].split("/")[0]
    run = client.get_run(mv.run_id)
    assert run.data.tags["lambdaslim.variant"] == mv.tags["variant"] and client.list_artifacts(mv.run_id, "model")


def test_tracking_register_model_false_keeps_the_registry_empty(make_project, mlflow_uri):
    file = make_project(STAGES, "tracking:\n  register_model: false\n")
    assert main(["run", str(file)]) == 0
    report = json.loads((file.parents[2] / "artifacts" / "tiny" / "report.json").read_text())
    assert report["best"] and report["selection"]["registered"] is None
    assert MlflowClient(tracking_uri=mlflow_uri).search_registered_models() == []
