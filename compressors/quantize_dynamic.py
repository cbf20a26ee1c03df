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

from compressors.base import Artifact, StageConfigBase, StageContext, StageResult, copy_side_files, register


class QuantizeDynamicConfig(StageConfigBase):
    kind: Literal["quantize_dynamic"] = "quantize_dynamic"
    per_channel: bool = False
    reduce_range: bool = Field(False, description="7-bit weights: avoids overflow on pre-VNNI x86")
    weight_type: Literal["qint8", "quint8"] = "qint8"
    op_types: list[str] | None = Field(None, description="e.g. [MatMul, Attention, Gather]; None = all supported")
    exclude_nodes: list[str] = []


@register(QuantizeDynamicConfig, accepts=("onnx",), produces="onnx")
def quantize_dynamic(cfg: QuantizeDynamicConfig, inp: Artifact, out: Path, ctx: StageContext) -> StageResult:
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization import quantize_dynamic as ort_quantize_dynamic

    copy_side_files(inp.path, out)
    ort_quantize_dynamic(
        inp.onnx_file, out / "model.onnx",
        op_types_to_quantize=list(cfg.op_types) if cfg.op_types else None,
        per_channel=cfg.per_channel, reduce_range=cfg.reduce_range,
        weight_type=QuantType.QInt8 if cfg.weight_type == "qint8" else QuantType.QUInt8,
        nodes_to_exclude=list(cfg.exclude_nodes),
        # Fused graphs carry outputs without type info; FLOAT is their type (optimum#2186).
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    graph = onnx.load(str(out / "model.onnx"), load_external_data=False).graph
    quantized = sum(1 for n in graph.node if n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul", "QAttention",
                                                            "DynamicQuantizeLinear", "QGemm"))
    return StageResult(Artifact(out, "onnx"), {"quantized_nodes": quantized})
