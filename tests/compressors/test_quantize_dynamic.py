import numpy as np
import onnx
import pytest

from lambdaslim.compressors import StageError
from lambdaslim.compressors.optimize_onnx import OptimizeOnnxConfig, optimize_onnx
from lambdaslim.compressors.quantize_dynamic import QuantizeDynamicConfig, quantizable_nodes, quantize_dynamic
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
    nodes = quantizable_nodes(tiny_onnx, QuantizeDynamicConfig(op_types=["MatMul"]))
    fewer = quantize_dynamic(QuantizeDynamicConfig(kind="quantize_dynamic", op_types=["MatMul"],
                                                   exclude_nodes=[nodes[0]]), tiny_onnx, tmp_path / "b",
                             stage_context())
    assert fewer.info["quantized_nodes"] < everything.info["quantized_nodes"]
    fp32 = {n.name for n in onnx.load(str(fewer.artifact.onnx_file)).graph.node if n.op_type == "MatMul"}
    assert nodes[0] in fp32 and not fp32 & set(nodes[1:])  # the excluded node stayed fp32, the others did not
    # The embedding tables (Gather) are quantized, and dequantized, only when op_types allows every type.
    assert "DequantizeLinear" in op_types(everything.artifact) and "DequantizeLinear" not in op_types(fewer.artifact)


def test_quantizable_nodes_and_include_nodes(tiny_onnx, tmp_path):
    kinds = {n.name: n.op_type for n in onnx.load(str(tiny_onnx.onnx_file)).graph.node}
    nodes = quantizable_nodes(tiny_onnx, QuantizeDynamicConfig(kind="quantize_dynamic", op_types=["MatMul"]))
    assert len(nodes) == 12 and {kinds[n] for n in nodes} == {"MatMul"}  # weight MatMuls, not q.k or attn.v
    one = quantize_dynamic(QuantizeDynamicConfig(kind="quantize_dynamic", include_nodes=[nodes[0]]), tiny_onnx,
                           tmp_path / "one", stage_context())
    graph = onnx.load(str(one.artifact.onnx_file)).graph
    assert sum(1 for n in graph.node if n.op_type == "MatMulInteger") == 1
    assert nodes[0] not in {n.name for n in graph.node if n.op_type == "MatMul"}
    with pytest.raises(StageError, match="include_nodes names 1 node") as err:
        quantize_dynamic(QuantizeDynamicConfig(kind="quantize_dynamic", include_nodes=["typo"]), tiny_onnx,
                         tmp_path / "bad", stage_context())
    assert "\n" not in str(err.value)
