import numpy as np
import onnx
import pytest
from pydantic import ValidationError

from lambdaslim.compressors import Artifact, StageError
from lambdaslim.compressors.export_onnx import ExportOnnxConfig, export_onnx
from tests.compressors.helpers import onnx_logits
from tests.conftest import stage_context


def test_export_writes_a_valid_onnx_model_that_matches_pytorch(tiny_model_dir, tmp_path):
    res = export_onnx(ExportOnnxConfig(kind="export_onnx", opset=14), Artifact(tiny_model_dir, "pytorch"),
                      tmp_path, stage_context())
    assert res.artifact.format == "onnx"
    model = onnx.load(str(res.artifact.onnx_file))
    onnx.checker.check_model(model)
    assert any(o.version == 14 for o in model.opset_import if o.domain in ("", "ai.onnx"))
    assert 0 <= res.info["max_abs_diff"] < 1e-4
    assert (tmp_path / "tokenizer.json").exists()  # the artifact is self-contained
    logits, labels = onnx_logits(res.artifact)
    assert (logits.argmax(-1) == labels).mean() > 0.9  # the tiny model learnt its task and kept it


def test_export_refuses_a_mismatch_beyond_tolerance(tiny_model_dir, tmp_path):
    # An impossible tolerance forces the real comparison to trip: the check must raise, not record.
    cfg = ExportOnnxConfig(kind="export_onnx", max_abs_diff=1e-30)
    with pytest.raises(StageError, match="differ from PyTorch"):
        export_onnx(cfg, Artifact(tiny_model_dir, "pytorch"), tmp_path, stage_context())


def test_opset_range_is_validated():
    with pytest.raises(ValidationError, match="opset"):
        ExportOnnxConfig(kind="export_onnx", opset=5)
    assert np.isfinite(ExportOnnxConfig(kind="export_onnx").max_abs_diff)
