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

from compressors.base import Artifact, FallbackSpec, StageConfigBase, StageContext, StageError, StageResult, copy_side_files, register


class QuantizeDynamicConfig(StageConfigBase):
    kind: Literal["quantize_dynamic"] = "quantize_dynamic"
    per_channel: bool = False
    reduce_range: bool = Field(False, description="7-bit weights: avoids overflow on pre-VNNI x86")
    weight_type: Literal["qint8", "quint8"] = "qint8"
    op_types: list[str] | None = Field(None, description="e.g. [MatMul, Attention, Gather]; None = all supported")
    exclude_nodes: list[str] = []
    fallback: FallbackSpec | None = None  # read by the runner only: accuracy-aware fallback
    include_nodes: list[str] | None = Field(None, description="quantize only these nodes (per-node sensitivity)")


def quantizable_nodes(artifact: Artifact, cfg: QuantizeDynamicConfig) -> list[str]:
    """Nodes with a constant weight this config would quantize (op_types, include/exclude applied)."""
    from onnxruntime.quantization.registry import IntegerOpsRegistry

    model = onnx.load(str(artifact.onnx_file), load_external_data=False)
    ops = set(cfg.op_types or IntegerOpsRegistry) & set(IntegerOpsRegistry)
    return [n for n in weight_nodes(model, ops)
            if n not in cfg.exclude_nodes and (cfg.include_nodes is None or n in cfg.include_nodes)]


@register(QuantizeDynamicConfig, accepts=("onnx",), produces="onnx")
def quantize_dynamic(cfg: QuantizeDynamicConfig, inp: Artifact, out: Path, ctx: StageContext) -> StageResult:
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization import quantize_dynamic as ort_quantize_dynamic

    check_node_names("quantize_dynamic", onnx.load(str(inp.onnx_file), load_external_data=False),
                     cfg.exclude_nodes, cfg.include_nodes)
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
    graph = onnx.load(str(out / "model.onnx"), load_external_data=False).graph
    quantized = sum(1 for n in graph.node if n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul", "QAttention",
                                                            "DynamicQuantizeLinear", "QGemm"))
    return StageResult(Artifact(out, "onnx"), {"quantized_nodes": quantized})


def weight_nodes(model: onnx.ModelProto, op_types: set[str]) -> list[str]:
    """Names of nodes of `op_types` that read a constant float weight of rank >= 2 (a MatMul/Gemm/Conv
    weight, an embedding table; never a 1-D bias or norm scale), in graph order. Shared by the quantizers."""
    floats = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16)
    weights = {t.name for t in model.graph.initializer if t.data_type in floats and len(t.dims) >= 2}
    for n in model.graph.node:
        if n.op_type == "Constant":
            value = next((a.t for a in n.attribute if a.name == "value"), None)
            if value is not None and value.data_type in floats and len(value.dims) >= 2:
                weights.add(n.output[0])
    return [n.name for n in model.graph.node if n.op_type in op_types and weights & set(n.input)]


def check_node_names(kind: str, model: onnx.ModelProto, exclude: list[str], include: list[str] | None) -> None:
    """A misspelt node name would silently quantize everything (or nothing): refuse it in one line."""
    names = {n.name for n in model.graph.node}
    for key, given in (("exclude_nodes", exclude), ("include_nodes", include or [])):
        unknown = [x for x in given if x not in names]
        if unknown:
            raise StageError(f"{kind}: {key} names {len(unknown)} node(s) not in the graph, e.g. {unknown[0]!r}")
    if include is not None and not include:
        raise StageError(f"{kind}: include_nodes is empty; omit it to quantize every supported node")
