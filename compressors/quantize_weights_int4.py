"""Weight-only int4 quantization with ONNX Runtime: MatMul weights become MatMulNBits, embedding tables
(Gather) become GatherBlockQuantized. Each block of `block_size` weights (along the input dimension of a
MatMul, along the hidden dimension of an embedding row) gets its own scale (and zero point when
asymmetric); activations stay float and the kernels dequantize on the fly. No calibration data is needed.

Embeddings matter for size: in a small encoder the word-embedding table is most of the bytes (MiniLM-L6:
11.7M of 22.7M parameters), and int8 MatMul quantization leaves it fp32. Gather quantization needs the
plain Gather of an unfused graph: run this before optimize_onnx, which folds embeddings into one node.

Reference: Dettmers & Zettlemoyer, 2023, "The case for 4-bit precision: k-bit Inference Scaling Laws"
(ICML); blockwise round-to-nearest as in Frantar et al., 2023, "GPTQ" (ICLR), baseline RTN.

Only MatMul nodes whose weight is a 2-D constant are quantized. On a graph fused by optimize_onnx the
Q/K/V projections live inside Attention nodes, so only the remaining MatMuls (attention output, FFN)
become MatMulNBits; the count is recorded.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import onnx
from pydantic import Field, field_validator

from lambdaslim.compressors.base import (Artifact, NodeSelection, StageConfigBase, StageContext, StageError,
                                         StageResult, copy_side_files, register)
from lambdaslim.compressors.onnx_nodes import FLOATS, load_graph, node_names


class QuantizeWeightsInt4Config(NodeSelection, StageConfigBase):
    kind: Literal["quantize_weights_int4"] = "quantize_weights_int4"
    block_size: int = Field(32, ge=16, le=256, description="weights per scale along K; a power of 2")
    symmetric: bool = True
    accuracy_level: int | None = Field(None, ge=0, le=4, description="MatMulNBits compute type: 0 unset, "
                                       "1 fp32, 2 fp16, 3 bf16, 4 int8 activations")
    # Narrows NodeSelection's op_types to the two ops ORT's weight-only int4 quantizer has kernels for.
    op_types: list[Literal["MatMul", "Gather"]] = Field(["MatMul"], min_length=1,
                                                        description="Gather = embedding tables (before optimize_onnx)")

    @field_validator("block_size")
    @classmethod
    def _power_of_two(cls, v: int) -> int:
        if v & (v - 1):
            raise ValueError(f"block_size must be a power of 2 (16, 32, 64, 128 or 256), not {v}")
        return v


def quantizable_nodes(artifact: Artifact, cfg: QuantizeWeightsInt4Config) -> list[str]:
    """Nodes with a constant 2-D weight this config would quantize (op_types, include/exclude applied)."""
    return cfg.selected(_weight_nodes(load_graph(artifact.onnx_file), cfg.op_types))


@register(QuantizeWeightsInt4Config, accepts=("onnx",), produces="onnx", nodes=quantizable_nodes)
def quantize_weights_int4(cfg: QuantizeWeightsInt4Config, inp: Artifact, out: Path,
                          ctx: StageContext) -> StageResult:
    from onnxruntime.quantization import QuantFormat

    MatMulNBitsQuantizer = _import_quantizer()
    model = onnx.load(str(inp.onnx_file))
    cfg.check_node_names(node_names(model))
    candidates = _weight_nodes(model, cfg.op_types)
    # ORT's nodes_to_include adds to the op types; "only these" is exclusion of every other candidate.
    exclude = (set(candidates) - set(cfg.selected(candidates))) | set(cfg.exclude_nodes)
    quantizer = MatMulNBitsQuantizer(model, bits=4, block_size=cfg.block_size, is_symmetric=cfg.symmetric,
                                     accuracy_level=cfg.accuracy_level, nodes_to_exclude=sorted(exclude),
                                     quant_format=QuantFormat.QOperator, op_types_to_quantize=tuple(cfg.op_types))
    quantizer.process()
    ops = [n.op_type for n in quantizer.model.model.graph.node]
    produced, gathers = ops.count("MatMulNBits"), ops.count("GatherBlockQuantized")
    if produced + gathers == 0:
        hint = " (Gather: optimize_onnx folds embeddings into one node; quantize them before it)" \
            if "Gather" in cfg.op_types else ""
        raise StageError(f"quantize_weights_int4: no {' or '.join(cfg.op_types)} with a constant 2-D weight to "
                         f"quantize ({len(candidates)} candidate(s), {len(exclude & set(candidates))} excluded){hint}")
    copy_side_files(inp.path, out)
    quantizer.model.save_model_to_file(str(out / "model.onnx"), use_external_data_format=False)
    return StageResult(Artifact(out, "onnx"), {
        "matmulnbits_nodes": produced, "gather_int4_nodes": gathers,
        "matmul_fp32_nodes": len(_weight_nodes(quantizer.model.model, ["MatMul"])),
        "block_size": cfg.block_size, "symmetric": cfg.symmetric, "accuracy_level": cfg.accuracy_level})


def _import_quantizer():
    """Import MatMulNBitsQuantizer without its side effects: at import it runs logging.basicConfig(level=INFO)
    on the root logger (every library's INFO records would then print) and logs a line per node."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    from onnxruntime.quantization import matmul_nbits_quantizer

    if not handlers:  # basicConfig only acts on an unconfigured root: undo exactly that
        for h in root.handlers[:]:
            root.removeHandler(h)
        root.setLevel(level)
    matmul_nbits_quantizer.logger.setLevel(logging.WARNING)
    return matmul_nbits_quantizer.MatMulNBitsQuantizer


WEIGHT_INPUT = {"MatMul": 1, "Gather": 0}  # which input holds the weight: B of a MatMul, the table of a Gather


def _weight_nodes(model: onnx.ModelProto, op_types) -> list[str]:
    """Nodes whose weight is a 2-D float initializer: what MatMulNBits / GatherBlockQuantized can take."""
    two_d = {t.name for t in model.graph.initializer if len(t.dims) == 2 and t.data_type in FLOATS}
    return [n.name for n in model.graph.node if n.op_type in op_types
            and len(n.input) > WEIGHT_INPUT[n.op_type] and n.input[WEIGHT_INPUT[n.op_type]] in two_d]
