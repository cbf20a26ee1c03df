"""Unstructured magnitude pruning: zero the smallest weights of every Linear layer (kept for comparison).

References: Han, Pool, Tran & Dally, 2015, "Learning both Weights and Connections for Efficient Neural
Networks" (NeurIPS); Zhu & Gupta, 2017, "To prune, or not to prune: exploring the efficacy of pruning for
model compression" (the global/per-layer magnitude criterion and its sparsity schedule).

The zeros are stored as ordinary dense floats: without a sparse storage format or sparse kernels, neither
the file size on disk nor the CPU latency changes (the benchmark shows identical bytes). Only compression
of the package (zip) gains a little from runs of zeros. Use prune_structured to shrink shapes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from lambdaslim.compressors.base import (WEIGHT_FILES, Artifact, StageConfigBase, StageContext, StageResult,
                                         copy_side_files, register)


class PruneMagnitudeConfig(StageConfigBase):
    kind: Literal["prune_magnitude"] = "prune_magnitude"
    sparsity: float = Field(0.5, gt=0, lt=1, description="fraction of Linear weights set to zero")
    scope: Literal["global", "per_layer"] = Field("global", description="rank weights across all Linear layers "
                                                                        "together, or within each")
    include_classifier: bool = Field(False, description="also prune the classification head (it is tiny "
                                                         "and every weight in it matters)")


@register(PruneMagnitudeConfig, accepts=("pytorch",), produces="pytorch")
def prune_magnitude(cfg: PruneMagnitudeConfig, inp: Artifact, out: Path, ctx: StageContext) -> StageResult:
    import torch
    from torch.nn.utils import prune
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(inp.path)
    head = model.base_model_prefix  # Linear layers of the base model (encoder, pooler); the classifier if asked
    targets = [(m, "weight") for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)
               and (cfg.include_classifier or name.startswith(f"{head}."))]
    if cfg.scope == "global":
        prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=cfg.sparsity)
    else:
        for module, name in targets:
            prune.l1_unstructured(module, name, amount=cfg.sparsity)
    for module, name in targets:  # make the zeros permanent: a plain weight again, no mask or hook
        prune.remove(module, name)
    zeros = sum(int((m.weight == 0).sum()) for m, _ in targets)
    total = sum(m.weight.numel() for m, _ in targets)
    copy_side_files(inp.path, out, skip=WEIGHT_FILES)
    model.save_pretrained(out, safe_serialization=True)
    params = sum(p.numel() for p in model.parameters())
    return StageResult(Artifact(out, "pytorch"), {
        "sparsity_target": cfg.sparsity, "sparsity_linear": round(zeros / total, 5),
        "sparsity_model": round(sum(int((p == 0).sum()) for p in model.parameters()) / params, 5),
        "params_before": params, "params_after": params, "size_changes": 0})
