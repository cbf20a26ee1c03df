"""Transformer graph optimization with ONNX Runtime's fusions (attention, LayerNorm, GELU, bias).

Reference: ONNX Runtime transformer optimizer (Microsoft, https://onnxruntime.ai/docs/performance/
transformers-optimization.html); fused multi-head attention follows Vaswani et al., 2017,
"Attention Is All You Need".
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import Field

from lambdaslim.compressors.base import (Artifact, StageConfigBase, StageContext, StageError, StageResult,
                                         copy_side_files, register)


class OptimizeOnnxConfig(StageConfigBase):
    kind: Literal["optimize_onnx"] = "optimize_onnx"
    # 0: fusions only; 1: + ORT basic; 2: + ORT extended (CPU-specific ops); 99: all.
    level: Literal[0, 1, 2, 99] = 2
    model_type: str = Field("bert", description="onnxruntime.transformers model type")
    gelu_approximation: bool = Field(False, description="tanh GELU: faster, slightly different outputs")


@register(OptimizeOnnxConfig, accepts=("onnx",), produces="onnx")
def optimize_onnx(cfg: OptimizeOnnxConfig, inp: Artifact, out: Path, ctx: StageContext) -> StageResult:
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    hf_config = json.loads((inp.path / "config.json").read_text())
    options = FusionOptions(cfg.model_type)
    options.enable_gelu_approximation = cfg.gelu_approximation
    optimized = optimize_model(
        str(inp.onnx_file), model_type=cfg.model_type,
        num_heads=hf_config.get("num_attention_heads", 0), hidden_size=hf_config.get("hidden_size", 0),
        optimization_options=options, opt_level=cfg.level or None, use_gpu=False,
    )
    copy_side_files(inp.path, out)
    optimized.save_model_to_file(str(out / "model.onnx"))
    fused = {k: v for k, v in optimized.get_fused_operator_statistics().items() if v}
    if not fused and cfg.level == 0:
        raise StageError("optimize_onnx: no fusion applied; check model_type for this architecture")
    return StageResult(Artifact(out, "onnx"), {f"fused_{k}": v for k, v in fused.items()} | {"level": cfg.level})
