import numpy as np

from lambdaslim.compressors.optimize_onnx import OptimizeOnnxConfig, optimize_onnx
from tests.compressors.helpers import onnx_logits, op_types
from tests.conftest import stage_context


def test_fusions_replace_attention_and_layernorm_subgraphs(tiny_onnx, tmp_path):
    res = optimize_onnx(OptimizeOnnxConfig(kind="optimize_onnx", level=1), tiny_onnx, tmp_path, stage_context())
    before, after = op_types(tiny_onnx), op_types(res.artifact)
    assert "Attention" in after or "MultiHeadAttention" in after
    assert "SkipLayerNormalization" in after or "LayerNormalization" in after
    assert "Attention" not in before
    assert any(k.startswith("fused_") for k in res.info)
    a, _ = onnx_logits(tiny_onnx)
    b, _ = onnx_logits(res.artifact)
    np.testing.assert_allclose(a, b, atol=1e-4)  # fusion is exact up to float reassociation


def test_fusion_only_level_zero_runs_too(tiny_onnx, tmp_path):
    res = optimize_onnx(OptimizeOnnxConfig(kind="optimize_onnx", level=0), tiny_onnx, tmp_path, stage_context())
    assert res.info["level"] == 0 and (tmp_path / "tokenizer.json").exists()
