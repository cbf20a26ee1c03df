"""Convert an ONNX model's float32 weights and activations to float16 with ONNX Runtime's converter
(the onnxconverter-common algorithm); inputs and outputs keep their types (int64 ids, float32 logits).

Reference: Micikevicius et al., 2018, "Mixed Precision Training" (ICLR) for IEEE half precision in deep
networks; converter: onnxruntime.transformers.float16 (from onnxconverter-common).

Halves the weights on disk. Whether it is faster depends on the CPU's fp16 kernels: where ORT has none,
it inserts Casts back to float32, which the benchmark shows; this stage only records what it converted.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import onnx
from pydantic import Field

from lambdaslim.compressors.base import (Artifact, StageConfigBase, StageContext, StageError, StageResult,
                                         copy_side_files, register)


class ConvertFp16Config(StageConfigBase):
    kind: Literal["convert_fp16"] = "convert_fp16"
    op_block_list: list[str] = Field([], description="op types kept in float32, besides ORT's default list "
                                                     "(ML/non-numeric ops such as TopK, Range, CumSum)")
    node_block_list: list[str] = Field([], description="node names kept in float32")


@register(ConvertFp16Config, accepts=("onnx",), produces="onnx")
def convert_fp16(cfg: ConvertFp16Config, inp: Artifact, out: Path, ctx: StageContext) -> StageResult:
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    model = onnx.load(str(inp.onnx_file))
    names = {n.name for n in model.graph.node}
    unknown = [n for n in cfg.node_block_list if n not in names]
    if unknown:
        raise StageError(f"convert_fp16: node_block_list names {len(unknown)} node(s) not in the graph, "
                         f"e.g. {unknown[0]!r}")
    before = _float_initializers(model)
    blocked = sorted(set(DEFAULT_OP_BLOCK_LIST) | set(cfg.op_block_list))
    converted = convert_float_to_float16(model, keep_io_types=True, op_block_list=blocked,
                                         node_block_list=list(cfg.node_block_list))
    copy_side_files(inp.path, out)
    onnx.save(converted, str(out / "model.onnx"))
    after = _float_initializers(converted)
    fp16 = sum(1 for dt in after.values() if dt == onnx.TensorProto.FLOAT16)
    if before and fp16 == 0:
        raise StageError("convert_fp16: no float32 initializer was converted (every consumer is blocked)")
    return StageResult(Artifact(out, "onnx"), {
        "fp16_initializers": fp16, "fp32_initializers": len(after) - fp16,
        "cast_nodes": sum(1 for n in converted.graph.node if n.op_type == "Cast"),
        "blocked_op_types": ",".join(cfg.op_block_list), "io_types_kept": True})


def _float_initializers(model: onnx.ModelProto) -> dict[str, int]:
    floats = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
    return {t.name: t.data_type for t in model.graph.initializer if t.data_type in floats}
