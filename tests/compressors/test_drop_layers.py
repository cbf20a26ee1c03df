import pytest
from pydantic import ValidationError
from transformers import AutoModelForSequenceClassification

from lambdaslim.compressors import Artifact, StageError
from lambdaslim.compressors.drop_layers import DropLayersConfig, drop_layers, evenly_spaced
from lambdaslim.compressors.export_onnx import ExportOnnxConfig, export_onnx
from lambdaslim.testing.tiny import build_tiny_classifier
from tests.compressors.helpers import onnx_logits
from tests.conftest import stage_context


@pytest.fixture(scope="module")
def four_layer_model(tmp_path_factory):
    return build_tiny_classifier(tmp_path_factory.mktemp("teacher4") / "model", layers=4)


@pytest.mark.parametrize("total,n,kept", [(6, 3, [1, 3, 5]), (12, 6, [1, 3, 5, 7, 9, 11]), (6, 6, [0, 1, 2, 3, 4, 5]),
                                          (6, 1, [5]), (4, 2, [1, 3]), (6, 2, [2, 5])])
def test_evenly_spaced_keeps_the_last_layer(total, n, kept):
    assert evenly_spaced(total, n) == kept


def params(path) -> int:
    return sum(p.numel() for p in AutoModelForSequenceClassification.from_pretrained(path).parameters())


def test_dropped_model_is_smaller_reloads_and_exports(four_layer_model, tmp_path):
    res = drop_layers(DropLayersConfig(num_layers=2), Artifact(four_layer_model, "pytorch"), tmp_path / "s",
                      stage_context())
    assert res.info["kept_layers"] == "1,3" and res.info["layers_after"] == 2
    reloaded = AutoModelForSequenceClassification.from_pretrained(res.artifact.path)
    assert reloaded.config.num_hidden_layers == 2 and len(reloaded.bert.encoder.layer) == 2
    assert params(res.artifact.path) == res.info["params_after"] < res.info["params_before"] == params(four_layer_model)
    assert (res.artifact.path / "tokenizer.json").exists()
    small = export_onnx(ExportOnnxConfig(), res.artifact, tmp_path / "s_onnx", stage_context()).artifact
    full = export_onnx(ExportOnnxConfig(), Artifact(four_layer_model, "pytorch"), tmp_path / "f_onnx",
                       stage_context()).artifact
    assert small.onnx_file.stat().st_size < 0.8 * full.onnx_file.stat().st_size
    logits, _ = onnx_logits(small)
    assert logits.shape[1] == 2


def test_kept_layers_are_the_teachers_own(four_layer_model, tmp_path):
    import torch

    res = drop_layers(DropLayersConfig(keep=[0, 3]), Artifact(four_layer_model, "pytorch"), tmp_path, stage_context())
    teacher = AutoModelForSequenceClassification.from_pretrained(four_layer_model)
    student = AutoModelForSequenceClassification.from_pretrained(res.artifact.path)
    for s_i, t_i in ((0, 0), (1, 3)):
        s_w = student.bert.encoder.layer[s_i].output.dense.weight
        assert torch.equal(s_w, teacher.bert.encoder.layer[t_i].output.dense.weight)


def test_keeping_a_layer_the_model_lacks_is_a_stage_error(four_layer_model, tmp_path):
    with pytest.raises(StageError, match="has 4"):
        drop_layers(DropLayersConfig(keep=[0, 7]), Artifact(four_layer_model, "pytorch"), tmp_path, stage_context())


@pytest.mark.parametrize("fields", [{}, {"keep": [0], "num_layers": 1}, {"keep": [2, 1]}, {"keep": [1, 1]},
                                    {"keep": [-1]}, {"num_layers": 0}, {"keep": []}])
def test_config_needs_one_valid_choice(fields):
    with pytest.raises(ValidationError):
        DropLayersConfig(**fields)
