import os

import numpy as np
import onnx
import pytest
from pydantic import ValidationError

from lambdaslim.compressors import StageError
from lambdaslim.compressors.optimize_onnx import OptimizeOnnxConfig, optimize_onnx
from lambdaslim.compressors.quantize_weights_int4 import (QuantizeWeightsInt4Config, quantizable_nodes,
                                                          quantize_weights_int4)
from tests.compressors.helpers import onnx_logits, op_types
from tests.conftest import stage_context


def cfg(**kw) -> QuantizeWeightsInt4Config:
    return QuantizeWeightsInt4Config(kind="quantize_weights_int4", **kw)


def nbits_nodes(artifact) -> list[str]:
    """The MatMuls that became MatMulNBits (ORT names each after its MatMul, plus "_Q4")."""
    graph = onnx.load(str(artifact.onnx_file)).graph
    return [n.name.removesuffix("_Q4") for n in graph.node if n.op_type == "MatMulNBits"]


def test_int4_weights_shrink_the_model_and_keep_accuracy(tiny_onnx, tmp_path):
    res = quantize_weights_int4(cfg(), tiny_onnx, tmp_path, stage_context())
    onnx.checker.check_model(onnx.load(str(res.artifact.onnx_file)))
    candidates = quantizable_nodes(tiny_onnx, cfg())
    assert len(candidates) == 12  # q, k, v, attention output, FFN in, FFN out; 2 layers
    assert res.info["matmulnbits_nodes"] == len(nbits_nodes(res.artifact)) == len(candidates)
    assert os.path.getsize(res.artifact.onnx_file) < 0.7 * os.path.getsize(tiny_onnx.onnx_file)
    logits, labels = onnx_logits(res.artifact)
    assert np.isfinite(logits).all() and (logits.argmax(-1) == labels).mean() > 0.85
    assert (tmp_path / "tokenizer.json").exists()


def test_on_a_fused_graph_only_the_remaining_matmuls_are_quantized(tiny_onnx, tmp_path):
    fused = optimize_onnx(OptimizeOnnxConfig(kind="optimize_onnx", level=2), tiny_onnx, tmp_path / "opt",
                          stage_context()).artifact
    res = quantize_weights_int4(cfg(block_size=16, symmetric=False, accuracy_level=4), fused, tmp_path / "q",
                                stage_context())
    assert "Attention" in op_types(res.artifact)  # q/k/v stay inside the fused Attention nodes
    assert res.info["matmulnbits_nodes"] == 6 and res.info["matmul_fp32_nodes"] == 0
    logits, labels = onnx_logits(res.artifact)
    assert (logits.argmax(-1) == labels).mean() > 0.85


def test_exclude_and_include_nodes(tiny_onnx, tmp_path):
    nodes = quantizable_nodes(tiny_onnx, cfg())
    fewer = quantize_weights_int4(cfg(exclude_nodes=nodes[:2]), tiny_onnx, tmp_path / "ex", stage_context())
    assert set(nbits_nodes(fewer.artifact)) == set(nodes[2:]) and fewer.info["matmul_fp32_nodes"] == 2
    kept = {n.name for n in onnx.load(str(fewer.artifact.onnx_file)).graph.node if n.op_type == "MatMul"}
    assert set(nodes[:2]) <= kept
    one = quantize_weights_int4(cfg(include_nodes=[nodes[3]]), tiny_onnx, tmp_path / "in", stage_context())
    assert nbits_nodes(one.artifact) == [nodes[3]]
    assert quantizable_nodes(tiny_onnx, cfg(exclude_nodes=nodes[:2])) == nodes[2:]


def test_nothing_to_quantize_is_a_one_line_error(tiny_onnx, tmp_path):
    with pytest.raises(StageError, match="no MatMul with a constant 2-D weight") as err:
        quantize_weights_int4(cfg(exclude_nodes=quantizable_nodes(tiny_onnx, cfg())), tiny_onnx, tmp_path,
                              stage_context())
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("size", [8, 48, 512])
def test_block_size_must_be_a_power_of_two_from_16_to_256(size):
    with pytest.raises(ValidationError):
        cfg(block_size=size)


def test_accuracy_level_is_ort_range():
    with pytest.raises(ValidationError):
        cfg(accuracy_level=5)
    assert cfg(accuracy_level=0).accuracy_level == 0


def test_int4_embeddings_shrink_the_table_and_the_graph_still_fuses_and_quantizes(tiny_onnx, tmp_path):
    from lambdaslim.compressors.quantize_dynamic import QuantizeDynamicConfig, quantize_dynamic

    emb = quantize_weights_int4(cfg(op_types=["Gather"]), tiny_onnx, tmp_path / "emb", stage_context())
    assert emb.info["gather_int4_nodes"] >= 1 and emb.info["matmulnbits_nodes"] == 0
    assert "GatherBlockQuantized" in op_types(emb.artifact) and "MatMulNBits" not in op_types(emb.artifact)
    fused = optimize_onnx(OptimizeOnnxConfig(level=2), emb.artifact, tmp_path / "opt", stage_context()).artifact
    assert "Attention" in op_types(fused)  # attention still fuses around the quantized embeddings
    q = quantize_dynamic(QuantizeDynamicConfig(per_channel=True), fused, tmp_path / "q", stage_context()).artifact
    assert {"GatherBlockQuantized", "DynamicQuantizeMatMul"} <= op_types(q) or \
        {"GatherBlockQuantized", "MatMulInteger"} <= op_types(q)
    logits, labels = onnx_logits(q)
    reference, _ = onnx_logits(tiny_onnx)
    assert (logits.argmax(-1) == labels).mean() > 0.85 and (logits.argmax(-1) == reference.argmax(-1)).mean() > 0.95
    table = lambda a: max(len(t.raw_data) for t in onnx.load(str(a.onnx_file)).graph.initializer  # noqa: E731
                          if "word_embeddings" in t.name)
    assert table(emb.artifact) <= table(tiny_onnx) / 8  # 4 of 32 bits (the scales are separate tensors)


def test_gather_on_a_fused_graph_says_to_quantize_before_optimizing(tiny_onnx, tmp_path):
    fused = optimize_onnx(OptimizeOnnxConfig(level=2), tiny_onnx, tmp_path / "opt", stage_context()).artifact
    with pytest.raises(StageError, match="before it"):
        quantize_weights_int4(cfg(op_types=["Gather"]), fused, tmp_path / "q", stage_context())
