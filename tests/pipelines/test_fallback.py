"""Accuracy-aware fallback and the per-layer sensitivity command on a tiny model with real ORT."""
import csv
import json

from mlflow.tracking import MlflowClient

import random

import numpy as np

from lambdaslim.compressors import Artifact
from lambdaslim.measure.benchmarks import predict_logits
from lambdaslim.cli import main
from lambdaslim.testing.tiny import FILLER, NEGATIVE, POSITIVE, build_tiny_classifier, write_tiny_project, write_tsv

STAGES = """  - kind: export_onnx
  - kind: quantize_dynamic
    fallback: {max_drop: 0.0, max_trials: 4}
"""
GATES = "gates:\n  accuracy: {max_drop: 0.0}\n"


def write_borderline_eval(model_dir, path, n: int = 80) -> None:
    """An evaluation split the fp32 model gets 100 % right by construction, made of the sentences it is
    least sure about: int8 rounding then flips some of them, so a zero-drop gate fails for real."""
    rng = random.Random(7)
    # Mixed cues (k positive, j negative words) spread the model's margins down to near zero.
    texts = [" ".join(rng.sample(FILLER, rng.randint(2, 8)) + rng.choices(POSITIVE, k=rng.randint(1, 3))
                      + rng.choices(NEGATIVE, k=rng.randint(1, 3))) for _ in range(3000)]
    logits = predict_logits(Artifact(model_dir, "pytorch"), texts, 32, 256, 1)
    margin = np.abs(logits[:, 1] - logits[:, 0])
    keep = [i for i in np.argsort(margin) if margin[i] > 1e-4][:n]  # above ONNX-vs-PyTorch noise
    write_tsv(path, [(texts[i], int(logits[i].argmax())) for i in keep])


def test_fallback_keeps_sensitive_nodes_fp32_and_records_each_trial(tmp_path, mlflow_uri, capsys):
    # Briefly trained, so its margins reach near zero (the shared fixture model is saturated).
    model = build_tiny_classifier(tmp_path / "model", train_steps=26)
    file = write_tiny_project(tmp_path / "project", STAGES, GATES, model_dir=model)
    write_borderline_eval(model, file.parents[2] / "data" / "eval.tsv")
    rc = main(["run", str(file)])
    out = capsys.readouterr().out
    run_dir = file.parents[2] / "artifacts" / "tiny"
    report = json.loads((run_dir / "report.json").read_text())
    quant = next(c for c in report["candidates"] if c["kind"] == "quantize_dynamic")
    info = quant["stage_info"]
    assert "fallback:" in out and "trial 1:" in out
    trials = info["fallback_trials"]
    assert 1 <= len(trials) <= 4
    assert [t["trial"] for t in trials] == list(range(1, len(trials) + 1))
    assert all(len(t["excluded"]) == t["trial"] for t in trials)
    chosen = info["fallback_chosen_trial"]
    assert info["fallback_excluded_nodes"] == (trials[chosen - 1]["excluded"] if chosen else [])
    assert quant["config"]["exclude_nodes"] == info["fallback_excluded_nodes"]
    # The stage stands on its most accurate trial (or on the unrepaired result when no trial beat it).
    best_acc = max([t["accuracy"] for t in trials] + [info["fallback_initial_accuracy"]])
    assert quant["metrics"]["accuracy"] == best_acc or trials[-1]["drop"] <= 0.0
    # Every trial is a nested MLflow run under the stage's run.
    client = MlflowClient(tracking_uri=mlflow_uri)
    exp = client.get_experiment_by_name("tiny")
    runs = client.search_runs([exp.experiment_id])
    stage_run = next(r for r in runs if r.info.run_name == "quantize_dynamic")
    trial_runs = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == stage_run.info.run_id]
    assert len(trial_runs) == len(trials)
    if quant["passed"]:
        assert rc == 0 and trials[-1]["drop"] <= 0.0


def test_sensitivity_command_writes_one_row_per_quantizable_node(make_project, mlflow_uri, capsys):
    file = make_project("  - kind: export_onnx\n  - kind: quantize_dynamic\n")
    assert main(["sensitivity", str(file), "--stage", "quantize_dynamic"]) == 0
    run_dir = file.parents[2] / "artifacts" / "tiny"
    from lambdaslim.compressors import Artifact
    from lambdaslim.compressors.quantize_dynamic import QuantizeDynamicConfig, quantizable_nodes

    exported = next((run_dir.parent / "stages").glob("export_onnx-*"))
    nodes = quantizable_nodes(Artifact(exported, "onnx"), QuantizeDynamicConfig(kind="quantize_dynamic"))
    with (run_dir / "sensitivity" / "quantize_dynamic.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["node"] for r in rows) == sorted(nodes)
    assert all(r["acc_change_only_this_quantized"] != "" for r in rows)
    assert (run_dir / "sensitivity" / "quantize_dynamic.png").read_bytes()[:4] == b"\x89PNG"
    client = MlflowClient(tracking_uri=mlflow_uri)
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    report = next(r for r in runs if r.info.run_name == "sensitivity-quantize_dynamic")
    assert {a.path for a in client.list_artifacts(report.info.run_id)} == {"quantize_dynamic.csv", "quantize_dynamic.png"}


def test_sensitivity_on_a_stage_without_nodes_is_one_line(make_project, mlflow_uri, capsys):
    file = make_project("  - kind: export_onnx\n")
    assert main(["sensitivity", str(file), "--stage", "export_onnx"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "no per-node quantization" in err
    assert main(["sensitivity", str(file), "--stage", "nope"]) == 2
    assert "no stage named 'nope'" in capsys.readouterr().err
