import numpy as np

from compressors.optimize_onnx import OptimizeOnnxConfig, optimize_onnx
from compressors.quantize_dynamic import QuantizeDynamicConfig, quantize_dynamic
from tests.compressors.helpers import onnx_logits, op_types
from tests.conftest import stage_context


def test_dynamic_int8_quantizes_matmuls_and_keeps_accuracy(tiny_onnx, tmp_path):
    res = quantize_dynamic(QuantizeDynamicConfig(kind="quantize_dynamic"), tiny_onnx, tmp_path, stage_context())
    ops = op_types(res.artifact)
    assert {"MatMulInteger", "DynamicQuantizeLinear"} & ops or "DynamicQuantizeMatMul" in ops
    assert res.info["quantized_nodes"] > 0
    logits, labels = onnx_logits(res.artifact)
    assert (logits.argmax(-1) == labels).mean() > 0.85


def test_quantizing_a_fused_graph_works(tiny_onnx, tmp_path):
    # optimum#2186: fused outputs lack type info; DefaultTensorType must keep this working.
    fused = optimize_onnx(OptimizeOnnxConfig(kind="optimize_onnx", level=2), tiny_onnx, tmp_path / "opt",
                          stage_context()).artifact
    res = quantize_dynamic(QuantizeDynamicConfig(kind="quantize_dynamic", per_channel=True), fused,
                           tmp_path / "q", stage_context())
    logits, labels = onnx_logits(res.artifact)
    assert np.isfinite(logits).all() and (logits.argmax(-1) == labels).mean() > 0.85


def test_op_types_and_exclusions_limit_what_is_quantized(tiny_onnx, tmp_path):
    everything = quantize_dynamic(QuantizeDynamicConfig(kind="quantize_dynamic"), tiny_onnx, tmp_path / "a",
                                  stage_context())
    import onnx

    first_matmul = next(n.name for n in onnx.load(str(tiny_onnx.onnx_file)).graph.node if n.op_type == "MatMul")
    fewer = quantize_dynamic(QuantizeDynamicConfig(kind="quantize_dynamic", op_types=["MatMul"],
                                                   exclude_nodes=[first_matmul]), tiny_onnx, tmp_path / "b",
                             stage_context())
    assert fewer.info["quantized_nodes"] < everything.info["quantized_nodes"]
    assert "MatMul" in op_types(fewer.artifact)  # the excluded node stayed fp32
