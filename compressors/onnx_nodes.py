"""ONNX graph helpers the quantizers share: which nodes read a constant weight.

Not a technique itself: it registers nothing. A module of its own, so editing one quantizer leaves the
cached outputs of the others valid (a technique's cache key digests every project module it imports).
"""
from __future__ import annotations

from pathlib import Path

import onnx

FLOATS = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16)


def load_graph(onnx_file: Path) -> onnx.ModelProto:
    """The graph without its external weights: enough to list and check nodes, cheap on a large model."""
    return onnx.load(str(onnx_file), load_external_data=False)


def node_names(model: onnx.ModelProto) -> list[str]:
    return [n.name for n in model.graph.node]


def weight_nodes(model: onnx.ModelProto, op_types: set[str]) -> list[str]:
    """Names of nodes of `op_types` that read a constant float weight of rank >= 2 (a MatMul/Gemm/Conv
    weight, an embedding table; never a 1-D bias or norm scale), in graph order."""
    weights = {t.name for t in model.graph.initializer if t.data_type in FLOATS and len(t.dims) >= 2}
    for n in model.graph.node:
        if n.op_type == "Constant":
            value = next((a.t for a in n.attribute if a.name == "value"), None)
            if value is not None and value.data_type in FLOATS and len(value.dims) >= 2:
                weights.add(n.output[0])
    return [n.name for n in model.graph.node if n.op_type in op_types and weights & set(n.input)]
