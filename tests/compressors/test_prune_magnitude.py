"""Unstructured magnitude pruning reaches its sparsity, yet the files keep every byte: zeros are still stored."""
import pytest
import torch
from pydantic import ValidationError
from transformers import AutoModelForSequenceClassification

from lambdaslim.compressors import Artifact
from lambdaslim.compressors.export_onnx import ExportOnnxConfig, export_onnx
from lambdaslim.compressors.prune_magnitude import PruneMagnitudeConfig, prune_magnitude
from tests.compressors.helpers import onnx_logits
from tests.conftest import stage_context


def linear_weights(path, classifier: bool = False) -> dict[str, torch.Tensor]:
    model = AutoModelForSequenceClassification.from_pretrained(path)
    return {n: m.weight for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)
            and (classifier or n.startswith("bert."))}


def test_sparsity_is_reached_but_no_file_gets_smaller(tiny_model_dir, tiny_onnx, tmp_path):
    res = prune_magnitude(PruneMagnitudeConfig(sparsity=0.6), Artifact(tiny_model_dir, "pytorch"), tmp_path / "p",
                          stage_context())
    assert res.info["size_changes"] == 0 and res.info["params_after"] == res.info["params_before"]
    weights = linear_weights(res.artifact.path)  # reloaded: the zeros are permanent, no mask or hook left
    zeros = sum(int((w == 0).sum()) for w in weights.values()) / sum(w.numel() for w in weights.values())
    assert zeros == pytest.approx(0.6, abs=0.01) == res.info["sparsity_linear"]
    name = "model.safetensors"
    assert (res.artifact.path / name).stat().st_size == (tiny_model_dir / name).stat().st_size
    onnx = export_onnx(ExportOnnxConfig(), res.artifact, tmp_path / "onnx", stage_context()).artifact
    assert abs(onnx.onnx_file.stat().st_size - tiny_onnx.onnx_file.stat().st_size) < 64  # the same tensors, dense
    logits, _ = onnx_logits(onnx)
    assert logits.shape[1] == 2


def test_per_layer_scope_prunes_each_layer_alike_and_spares_the_classifier(tiny_model_dir, tmp_path):
    res = prune_magnitude(PruneMagnitudeConfig(sparsity=0.3, scope="per_layer"), Artifact(tiny_model_dir, "pytorch"),
                          tmp_path, stage_context())
    for name, w in linear_weights(res.artifact.path).items():
        assert float((w == 0).float().mean()) == pytest.approx(0.3, abs=0.02), name
    classifier = AutoModelForSequenceClassification.from_pretrained(res.artifact.path).classifier.weight
    assert torch.equal(classifier, AutoModelForSequenceClassification.from_pretrained(tiny_model_dir).classifier.weight)


@pytest.mark.parametrize("fields", [{"sparsity": 0.0}, {"sparsity": 1.0}, {"scope": "layer"}, {"amount": 0.5}])
def test_bad_configs_are_refused(fields):
    with pytest.raises(ValidationError):
        PruneMagnitudeConfig(**fields)
