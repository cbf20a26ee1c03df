"""Dynamic int8 quantization of an ONNX model with ONNX Runtime: int8 weights, activations quantized
on the fly from their observed range, so no calibration data is needed.

Reference: Jacob et al., 2018, "Quantization and Training of Neural Networks for Efficient
Integer-Arithmetic-Only Inference" (CVPR); Zafrir et al., 2019, "Q8BERT: Quantized 8Bit BERT".
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import onnx
from pydantic import Field

from lambdaslim.compressors.base import (Artifact, NodeSelection, StageConfigBase, StageContext, StageResult,
                                         copy_side_files, register)
from lambdaslim.compressors.onnx_nodes import load_graph, node_names, weight_nodes

QUANTIZED_OPS = ("MatMulInteger", "DynamicQuantizeMatMul", "QAttention", "DynamicQuantizeLinear", "QGemm")


class QuantizeDynamicConfig(NodeSelection, StageConfigBase):
    kind: Literal["quantize_dynamic"] = "quantize_dynamic"
    per_channel: bool = False
    reduce_range: bool = Field(False, description="7-bit weights: avoids overflow on pre-VNNI x86")
    weight_type: Literal["qint8", "quint8"] = "qint8"


def quantizable_nodes(artifact: Artifact, cfg: QuantizeDynamicConfig) -> list[str]:
    """Nodes with a constant weight this config would quantize (op_types, include/exclude applied)."""
    from onnxruntime.quantization.registry import IntegerOpsRegistry

    ops = set(cfg.op_types or IntegerOpsRegistry) & set(IntegerOpsRegistry)
    return cfg.selected(weight_nodes(load_graph(artifact.onnx_file), ops))


@register(QuantizeDynamicConfig, accepts=("onnx",), produces="onnx", nodes=quantizable_nodes)
def quantize_dynamic(cfg: QuantizeDynamicConfig, inp: Artifact, out: Path, ctx: StageContext) -> StageResult:
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization import quantize_dynamic as ort_quantize_dynamic

    cfg.check_node_names(node_names(load_graph(inp.onnx_file)))
    copy_side_files(inp.path, out)
    ort_quantize_dynamic(
        inp.onnx_file, out / "model.onnx",
        op_types_to_quantize=list(cfg.op_types) if cfg.op_types else None,
        per_channel=cfg.per_channel, reduce_range=cfg.reduce_range,
        weight_type=QuantType.QInt8 if cfg.weight_type == "qint8" else QuantType.QUInt8,
        nodes_to_quantize=list(cfg.include_nodes or []) or None,
        nodes_to_exclude=list(cfg.exclude_nodes),
        # Fused graphs carry outputs without type info; FLOAT is their type (optimum#2186).
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    graph = load_graph(out / "model.onnx").graph
    quantized = sum(1 for n in graph.node if n.op_type in QUANTIZED_OPS)
    return StageResult(Artifact(out, "onnx"), {"quantized_nodes": quantized})
