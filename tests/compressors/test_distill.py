import json

import pytest
import torch
from pydantic import ValidationError
from transformers import AutoModelForSequenceClassification

import lambdaslim.compressors.training
from lambdaslim.compressors import TECHNIQUES, Artifact, StageContext, StageError
from lambdaslim.compressors.distill import DistillConfig, StudentArchitecture, distill, layer_mapping
from lambdaslim.compressors.drop_layers import DropLayersConfig, drop_layers
from lambdaslim.compressors.training import TrainingSpec
from lambdaslim.data.splits import Split
from lambdaslim.testing.tiny import build_tiny_classifier, make_rows, write_tsv
from tests.conftest import stage_context


class Interrupted(Exception):
    pass


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    return build_tiny_classifier(tmp_path_factory.mktemp("teacher") / "model", layers=4, train_steps=80)


@pytest.fixture(scope="module")
def student(teacher, tmp_path_factory):
    out = tmp_path_factory.mktemp("student") / "model"
    return drop_layers(DropLayersConfig(num_layers=1), Artifact(teacher, "pytorch"), out, stage_context()).artifact


def context(teacher, tmp_path, key="k") -> StageContext:
    rows = make_rows(256, 21)
    train = Split([t for t, _ in rows], torch.tensor([y for _, y in rows]).numpy())
    return StageContext(sample_texts=train.texts[:8], max_length=32, train=train,
                        teacher=Artifact(teacher, "pytorch"), work_dir=tmp_path / "work", stage_key=key)


FAST = TrainingSpec(steps=40, batch_size=16, lr=2e-3, warmup_ratio=0.0, checkpoint_every=10, max_length=32)


def test_distillation_lowers_the_kd_loss_and_keeps_the_student_small(teacher, tmp_path):
    # A fresh 1-layer student (the teacher's embeddings, a random layer) starts far from the teacher.
    cfg = DistillConfig(student_config=StudentArchitecture(num_hidden_layers=1), temperature=2.0,
                        training=FAST.model_copy(update={"steps": 80, "lr": 5e-3}))
    res = distill(cfg, Artifact(teacher, "pytorch"), tmp_path / "out", context(teacher, tmp_path))
    info = res.info
    assert info["train_steps"] == 80 and info["student_layers"] == 1 and info["teacher_layers"] == 4
    assert info["kd_loss_after"] < 0.5 * info["kd_loss_before"]
    assert info["teacher_agreement_after"] > info["teacher_agreement_before"] + 0.2
    assert info["student_params"] < info["teacher_params"]
    reloaded = AutoModelForSequenceClassification.from_pretrained(res.artifact.path)
    assert reloaded.config.num_hidden_layers == 1
    assert (res.artifact.path / "tokenizer.json").exists()


def test_a_smaller_architecture_trains_with_a_hidden_state_projection(teacher, tmp_path):
    arch = StudentArchitecture(num_hidden_layers=1, hidden_size=16, num_attention_heads=2, intermediate_size=32)
    cfg = DistillConfig(student_config=arch, hidden_weight=1.0, training=FAST.model_copy(update={"steps": 30}))
    res = distill(cfg, Artifact(teacher, "pytorch"), tmp_path / "out", context(teacher, tmp_path))
    assert res.info["student_source"] == "student_config"
    assert res.info["kd_loss_after"] < res.info["kd_loss_before"]
    assert AutoModelForSequenceClassification.from_pretrained(res.artifact.path).config.hidden_size == 16


def test_an_interrupted_distillation_resumes_and_ends_where_an_uninterrupted_one_does(teacher, student, tmp_path,
                                                                                       monkeypatch):
    cfg = DistillConfig(training=FAST)
    whole = distill(cfg, student, tmp_path / "whole", context(teacher, tmp_path / "a"))

    def stop_at_25(step):
        if step == 25:
            raise Interrupted

    monkeypatch.setattr(lambdaslim.compressors.training, "_after_step", stop_at_25)
    with pytest.raises(Interrupted):
        distill(cfg, student, tmp_path / "resumed", context(teacher, tmp_path / "b"))
    monkeypatch.undo()
    resumed = distill(cfg, student, tmp_path / "resumed", context(teacher, tmp_path / "b"))
    assert resumed.info["train_resumed_from_step"] == 20 and resumed.info["train_steps"] == 40
    a = AutoModelForSequenceClassification.from_pretrained(whole.artifact.path).state_dict()
    b = AutoModelForSequenceClassification.from_pretrained(resumed.artifact.path).state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)  # same batches, same dropout draws


def test_a_checkpoint_for_another_configuration_is_ignored(teacher, student, tmp_path, monkeypatch):
    cfg = DistillConfig(training=FAST)

    def stop_at_25(step):
        if step == 25:
            raise Interrupted

    monkeypatch.setattr(lambdaslim.compressors.training, "_after_step", stop_at_25)
    with pytest.raises(Interrupted):
        distill(cfg, student, tmp_path / "o", context(teacher, tmp_path, key="one"))
    monkeypatch.undo()
    res = distill(cfg, student, tmp_path / "o", context(teacher, tmp_path, key="two"))
    assert res.info["train_resumed_from_step"] == 0 and res.info["train_steps"] == 40


def test_a_minutes_budget_stops_early_and_says_so(teacher, student, tmp_path):
    cfg = DistillConfig(training=FAST.model_copy(update={"steps": 100_000, "max_minutes": 0.02}))
    res = distill(cfg, student, tmp_path / "o", context(teacher, tmp_path))
    assert 0 < res.info["train_steps"] < res.info["train_steps_planned"] == 100_000


def test_the_teacher_cannot_be_its_own_student(teacher, tmp_path):
    with pytest.raises(StageError, match="teacher itself"):
        distill(DistillConfig(training=FAST), Artifact(teacher, "pytorch"), tmp_path, context(teacher, tmp_path))


def test_without_a_teacher_it_is_a_stage_error(student, tmp_path):
    with pytest.raises(StageError, match="no teacher"):
        distill(DistillConfig(training=FAST), student, tmp_path, stage_context())


@pytest.mark.parametrize("fields", [{"temperature": 0}, {"hard_label_weight": 1.5}, {"hidden_weight": -1},
                                    {"student_dir": "x", "student_config": {"num_hidden_layers": 1}},
                                    {"training": {"steps": 0}}, {"training": {"stepz": 3}}])
def test_config_validation(fields):
    with pytest.raises(ValidationError):
        DistillConfig.model_validate(fields)


def test_layer_mapping_spreads_student_layers_over_the_teacher():
    assert layer_mapping(3, 6) == [(1, 2), (2, 4), (3, 6)]
    assert layer_mapping(2, 2) == [(1, 1), (2, 2)]


def test_distill_in_a_pipeline_is_keyed_by_teacher_and_train_and_resumes_after_a_crash(make_project, mlflow_uri,
                                                                                        monkeypatch, capsys):
    from lambdaslim.run.runner import run_pipeline
    from lambdaslim.run.session import Session

    stages = ("  - kind: drop_layers\n    num_layers: 1\n  - kind: distill\n    training: {steps: 30, batch_size: 16,"
              " lr: 0.002, checkpoint_every: 10, max_length: 32}\n  - kind: export_onnx\n  - kind: quantize_dynamic\n")
    file = make_project(stages, "gates:\n  accuracy: {max_drop: 100}\n")

    def crash_at_15(step):
        if step == 15:
            raise Interrupted

    monkeypatch.setattr(lambdaslim.compressors.training, "_after_step", crash_at_15)
    with pytest.raises(Interrupted):
        run_pipeline(file)
    monkeypatch.undo()
    result = run_pipeline(file)
    by_kind = {c.kind: c for c in result.candidates}
    assert list(by_kind) == ["baseline", "drop_layers", "distill", "export_onnx", "quantize_dynamic"]
    d = by_kind["distill"]
    assert d.stage_info["train_resumed_from_step"] == 10 and d.stage_info["train_steps"] == 30
    assert d.cached is False and by_kind["drop_layers"].cached is True
    assert d.stage_info["teacher_agreement_after"] > 0.95  # the 1-of-2-layer student kept the easy task
    assert not any((file.parents[2] / "artifacts" / "stages" / "work").glob("*/*"))  # checkpoints cleaned up
    record = json.loads(next((result.run_dir / "candidates").glob("*-distill.json")).read_text())
    assert record["stage_info"]["student_layers"] == 1

    session = Session.open(file)
    base = session.baseline()[1]

    def keys(session):  # (drop_layers, distill) stage keys, as a run of the pipeline computes them
        steps = session.steps()
        drop = session.stage_key(base, TECHNIQUES["drop_layers"], steps[1].cfg)
        return drop, session.stage_key(drop, TECHNIQUES["distill"], steps[2].cfg)

    drop, dist = keys(session)
    assert (drop, dist) == (by_kind["drop_layers"].stage_key, d.stage_key)
    session._baseline = (session._baseline[0], "another teacher")  # the same input, another teacher
    other_teacher = keys(session)
    assert other_teacher[0] == drop and other_teacher[1] != dist
    write_tsv(file.parents[2] / "data" / "train.tsv", make_rows(512, 14))  # other training rows
    other_train = keys(Session.open(file))
    assert other_train[0] == drop and other_train[1] != dist
