"""Structured pruning on the tiny BERT (hidden 32, 4 heads of 8, FFN 64, 2 layers): shapes shrink, the result
reloads with the stock classes, exports to ONNX, and recovery training resumes after an interruption."""
from dataclasses import replace

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from lambdaslim.compressors import Artifact, StageError, TECHNIQUES, training
from lambdaslim.compressors.export_onnx import ExportOnnxConfig, export_onnx
from lambdaslim.compressors.optimize_onnx import OptimizeOnnxConfig, optimize_onnx
from lambdaslim.compressors.prune_structured import (PLAN, PruneStructuredConfig, plan_heads, prune_structured,
                                                     score_units)
from lambdaslim.compressors.training import CHECKPOINT, TrainingSpec
from lambdaslim.data.splits import Split
from lambdaslim.spec.errors import SpecError
from lambdaslim.spec.load import load_pipeline
from lambdaslim.testing.tiny import make_rows
from tests.compressors.helpers import onnx_logits, op_types
from tests.conftest import stage_context

HIDDEN, LAYERS = 32, 2


def split_of(n: int, seed: int) -> Split:
    rows = make_rows(n, seed)
    return Split([t for t, _ in rows], np.array([y for _, y in rows], dtype=np.int64))


def context(train_seed: int = 13):
    return replace(stage_context(), train=split_of(256, train_seed))


@pytest.fixture(scope="module")
def halved(tiny_model_dir, tmp_path_factory):
    """Half the heads and half the FFN neurons of every layer, ranked by magnitude; and its ONNX export."""
    cfg = PruneStructuredConfig(heads_ratio=0.5, neurons_ratio=0.5, importance="magnitude")
    res = prune_structured(cfg, Artifact(tiny_model_dir, "pytorch"), tmp_path_factory.mktemp("halved"), context())
    onnx = export_onnx(ExportOnnxConfig(), res.artifact, tmp_path_factory.mktemp("halved_onnx"), stage_context())
    return res, onnx


@pytest.fixture(scope="module")
def global_gradient(tiny_model_dir, tmp_path_factory):
    cfg = PruneStructuredConfig(heads_ratio=0.5, neurons_ratio=0.5, heads_scope="global", importance_batches=4)
    return prune_structured(cfg, Artifact(tiny_model_dir, "pytorch"), tmp_path_factory.mktemp("global"), context())


def test_pruning_shrinks_the_parameters_and_the_onnx_file_by_the_removed_rows(halved, tiny_onnx):
    res, onnx = halved
    info = res.info
    assert (info["heads_before"], info["heads_after"], info["heads_per_layer"]) == (8, 4, "2,2")
    assert (info["neurons_before"], info["neurons_after"]) == (128, 64)
    # Per layer: Q, K, V lose 16 rows (+ bias), the attention output 16 columns; the FFN 32 rows (+ bias) and columns.
    removed = LAYERS * (3 * (16 * HIDDEN + 16) + HIDDEN * 16 + (32 * HIDDEN + 32) + HIDDEN * 32)
    assert info["params_before"] - info["params_after"] == removed
    reloaded = AutoModelForSequenceClassification.from_pretrained(res.artifact.path)
    assert sum(p.numel() for p in reloaded.parameters()) == info["params_after"]
    assert reloaded.config.intermediate_size == 32
    assert reloaded.bert.encoder.layer[0].attention.self.query.out_features == 16
    saved = tiny_onnx.onnx_file.stat().st_size - onnx.artifact.onnx_file.stat().st_size
    assert 0.95 * 4 * removed < saved < 1.05 * 4 * removed  # fp32: four bytes a parameter
    assert onnx.info["max_abs_diff"] < 1e-4  # the export's own check: ONNX Runtime agrees with PyTorch
    logits, labels = onnx_logits(onnx.artifact)
    assert (logits.argmax(-1) == labels).mean() >= 0.8  # the cue task survives half the units even untrained


def test_reloaded_model_computes_the_original_with_the_pruned_units_masked(global_gradient, tiny_model_dir):
    pruned = AutoModelForSequenceClassification.from_pretrained(global_gradient.artifact.path).eval()  # stock class
    original = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, attn_implementation="eager").eval()
    counts = [4 - len(pruned.config.pruned_heads.get(i, [])) for i in range(LAYERS)]
    assert ",".join(map(str, counts)) == global_gradient.info["heads_per_layer"] and sum(counts) == 4
    head_mask = torch.ones(LAYERS, 4)
    for layer, heads in pruned.config.pruned_heads.items():
        head_mask[int(layer), heads] = 0
    with torch.no_grad():
        for o, p in zip(original.bert.encoder.layer, pruned.bert.encoder.layer):
            kept = [int((o.intermediate.dense.weight == row).all(1).nonzero()) for row in p.intermediate.dense.weight]
            o.output.dense.weight[:, sorted(set(range(64)) - set(kept))] = 0  # a removed neuron adds nothing
        enc = AutoTokenizer.from_pretrained(tiny_model_dir)([t for t, _ in make_rows(16, 7)], padding=True,
                                                            return_tensors="pt")
        torch.testing.assert_close(pruned(**enc).logits, original(**enc, head_mask=head_mask).logits,
                                   atol=1e-5, rtol=1e-4)


def test_uneven_heads_export_and_fuse_in_onnx_runtime(global_gradient, tmp_path):
    onnx = export_onnx(ExportOnnxConfig(), global_gradient.artifact, tmp_path / "onnx", stage_context()).artifact
    fused = optimize_onnx(OptimizeOnnxConfig(), onnx, tmp_path / "opt", stage_context())
    assert fused.info["fused_Attention"] == LAYERS and "Attention" in op_types(fused.artifact)
    np.testing.assert_allclose(onnx_logits(fused.artifact)[0], onnx_logits(onnx)[0], atol=1e-4)


def test_gradient_importance_reads_the_data_and_ranks_differently_from_magnitude(tiny_model_dir):
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    *_, mag_heads, mag_neurons = score_units(model, "magnitude")
    *_, heads, neurons = score_units(model, "gradient", split_of(128, 13), tok, batches=2, max_length=32)
    *_, _, other = score_units(model, "gradient", split_of(128, 77), tok, batches=2, max_length=32)
    assert all(p.requires_grad for p in model.parameters())  # scoring leaves the model as it found it
    assert all(bool((n > 0).all()) and bool(torch.isfinite(n).all()) for n in neurons)
    assert any(not torch.equal(n.argsort(), m.argsort()) for n, m in zip(neurons, mag_neurons))
    assert not all(torch.allclose(a, b) for a, b in zip(neurons, other))  # other rows, other scores
    with pytest.raises(StageError, match="needs data.train"):
        score_units(model, "gradient", None, tok)


def test_global_ranking_keeps_a_head_in_every_layer():
    scores = [torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([10.0, 20.0, 30.0, 40.0])]
    alive = [[0, 1, 2, 3], [0, 1, 2, 3]]
    assert plan_heads(scores, alive, 0.5, "global") == [[0, 1, 2], [0]]  # the weak layer keeps its best head
    assert plan_heads(scores, alive, 0.5, "per_layer") == [[0, 1], [0, 1]]
    assert plan_heads(scores, [[1, 2, 3], [0, 2, 3]], 0.5, "per_layer") == [[1, 2], [0, 2]]  # original ids


class Interrupted(Exception):
    pass


def test_recovery_trains_its_steps_and_resumes_after_an_interruption(tiny_model_dir, tmp_path, monkeypatch):
    cfg = PruneStructuredConfig(heads_ratio=0.25, neurons_ratio=0.25, importance_batches=2,
                                recovery=TrainingSpec(steps=6, batch_size=16, checkpoint_every=2, lr=1e-3))
    ctx = replace(context(), work_dir=tmp_path / "work", stage_key="key-1")

    def interrupt(step):
        if step == 3:
            raise Interrupted

    monkeypatch.setattr(training, "_after_step", interrupt)
    with pytest.raises(Interrupted):
        prune_structured(cfg, Artifact(tiny_model_dir, "pytorch"), tmp_path / "killed", ctx)
    assert (ctx.work_dir / CHECKPOINT).exists() and (ctx.work_dir / PLAN).exists()
    monkeypatch.setattr(training, "_after_step", lambda step: None)
    resumed = prune_structured(cfg, Artifact(tiny_model_dir, "pytorch"), tmp_path / "resumed", ctx)
    assert resumed.info["train_resumed_from_step"] == 2 and resumed.info["train_steps"] == 6
    straight = prune_structured(cfg, Artifact(tiny_model_dir, "pytorch"), tmp_path / "straight",
                                replace(ctx, work_dir=tmp_path / "work2", stage_key="key-2"))
    assert straight.info["train_resumed_from_step"] == 0 and straight.info["train_steps"] == 6
    a = AutoModelForSequenceClassification.from_pretrained(tmp_path / "resumed").state_dict()
    b = AutoModelForSequenceClassification.from_pretrained(tmp_path / "straight").state_dict()
    for name in b:  # an interrupted run ends where an uninterrupted one does
        torch.testing.assert_close(a[name], b[name], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("fields", [{"heads_ratio": 1.0}, {"heads_ratio": -0.1}, {"neurons_ratio": 1.5}, {},
                                    {"heads_ratio": 0.5, "importance": "taylor"}, {"heads_ratio": 0.5, "scope": "x"},
                                    {"heads_ratio": 0.5, "recovery": {"steps": 0}}])
def test_bad_configs_are_refused(fields):
    with pytest.raises(ValidationError):
        PruneStructuredConfig(**fields)


def test_data_train_is_needed_only_when_the_stage_reads_it(make_project):
    tech = TECHNIQUES["prune_structured"]
    assert tech.uses_for(PruneStructuredConfig(heads_ratio=0.5, importance="magnitude")) == ()
    assert tech.uses_for(PruneStructuredConfig(heads_ratio=0.5)) == ("train",)
    for extra, needs_train in (("importance: magnitude", False), ("importance: gradient", True),
                               ("importance: magnitude, recovery: {steps: 2}", True)):
        file = make_project(f"  - {{kind: prune_structured, heads_ratio: 0.5, {extra}}}\n")
        file.write_text("".join(ln for ln in file.read_text().splitlines(True) if not ln.startswith("  train:")))
        if needs_train:
            with pytest.raises(SpecError, match="data.train"):
                load_pipeline(file)
        else:
            load_pipeline(file)


def test_runner_prunes_exports_and_quantizes_with_every_stage_gated_and_tracked(make_project, mlflow_uri):
    from mlflow.tracking import MlflowClient

    from lambdaslim.cli import main

    file = make_project("  - {kind: prune_structured, heads_ratio: 0.25, neurons_ratio: 0.25, importance_batches: 2,"
                        " recovery: {steps: 4, batch_size: 16}}\n  - kind: export_onnx\n  - kind: quantize_dynamic\n")
    assert main(["run", str(file)]) in (0, 1)  # 1 only if no candidate passes; every stage is recorded either way
    client = MlflowClient(tracking_uri=mlflow_uri)
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    children = {r.info.run_name: r for r in runs if "mlflow.parentRunId" in r.data.tags}
    assert set(children) == {"baseline", "prune_structured", "export_onnx", "quantize_dynamic"}
    assert all(c.data.tags["gate.accuracy"] in ("pass", "fail") for c in children.values())
    pruned = children["prune_structured"].data.metrics
    assert pruned["stage.params_after"] < pruned["stage.params_before"] and pruned["stage.train_steps"] == 4
    assert pruned["stage.heads_after"] == 6 and pruned["stage.neurons_after"] == 96
    assert pruned["size_bytes"] < children["baseline"].data.metrics["size_bytes"]
    assert not (file.parents[2] / "artifacts" / "stages" / "work").exists() or not any(
        (file.parents[2] / "artifacts" / "stages" / "work").iterdir())  # checkpoints go once the output exists
