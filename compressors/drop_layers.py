"""Keep a subset of a transformer encoder's layers: the cheap way to initialise a shallower student.

Reference: Sajjad et al., 2023, "On the Effect of Dropping Layers of Pre-trained Transformer Models"
(Computer Speech & Language); the every-other-layer initialisation of Sanh et al., 2019, "DistilBERT".

The result is an ordinary Hugging Face model (config.num_hidden_layers updated) that reloads with
from_pretrained and exports to ONNX. Without training it usually loses accuracy: follow it with distill.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from lambdaslim.compressors.base import (WEIGHT_FILES, Artifact, StageConfigBase, StageContext, StageError,
                                         StageResult, copy_side_files, register)

# Where encoder layers live, by model family (BERT/RoBERTa/ELECTRA/XLM-R, DistilBERT).
LAYER_PATHS = (("encoder", "layer"), ("transformer", "layer"))


class DropLayersConfig(StageConfigBase):
    kind: Literal["drop_layers"] = "drop_layers"
    keep: list[int] | None = Field(None, min_length=1, description="0-based indices of the layers to keep, in order")
    num_layers: int | None = Field(None, ge=1, description="keep this many, evenly spaced, the last layer included")

    @model_validator(mode="after")
    def _one_choice(self):
        if (self.keep is None) == (self.num_layers is None):
            raise ValueError("give exactly one of keep (layer indices) or num_layers")
        if self.keep is not None and (len(set(self.keep)) != len(self.keep) or self.keep != sorted(self.keep)
                                      or min(self.keep) < 0):
            raise ValueError(f"keep must list distinct layer indices in increasing order, not {self.keep}")
        return self


def evenly_spaced(total: int, n: int) -> list[int]:
    """n of `total` layers, the last one always kept (it feeds the classifier): 6 -> 3 keeps [1, 3, 5]."""
    return sorted({total - 1 - round(i * total / n) for i in range(n)})


def encoder_layers(model):
    """The ModuleList of encoder layers and the config key that counts them."""
    base = model.base_model
    for owner, attr in LAYER_PATHS:
        layers = getattr(getattr(base, owner, None), attr, None)
        if layers is not None:
            return getattr(base, owner), attr
    raise StageError(f"drop_layers: cannot find the encoder layers of {type(model).__name__} "
                     f"(looked for base_model.{' and base_model.'.join('.'.join(p) for p in LAYER_PATHS)})")


@register(DropLayersConfig, accepts=("pytorch",), produces="pytorch")
def drop_layers(cfg: DropLayersConfig, inp: Artifact, out: Path, ctx: StageContext) -> StageResult:
    import torch
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(inp.path)
    owner, attr = encoder_layers(model)
    layers = getattr(owner, attr)
    total = len(layers)
    keep = cfg.keep if cfg.keep is not None else evenly_spaced(total, min(cfg.num_layers, total))
    if max(keep) >= total:
        raise StageError(f"drop_layers: keep {keep} names layer {max(keep)}, but the model has {total} "
                         f"(0..{total - 1})")
    before = sum(p.numel() for p in model.parameters())
    setattr(owner, attr, torch.nn.ModuleList([layers[i] for i in keep]))
    for new_index, layer in enumerate(getattr(owner, attr)):  # attention caches index layers by position
        attn = getattr(getattr(layer, "attention", None), "self", None)
        if attn is not None and hasattr(attn, "layer_idx"):
            attn.layer_idx = new_index
    key = "n_layers" if hasattr(model.config, "n_layers") else "num_hidden_layers"
    setattr(model.config, key, len(keep))
    copy_side_files(inp.path, out, skip=WEIGHT_FILES)
    model.save_pretrained(out, safe_serialization=True)
    after = sum(p.numel() for p in model.parameters())
    return StageResult(Artifact(out, "pytorch"), {
        "layers_before": total, "layers_after": len(keep), "kept_layers": ",".join(map(str, keep)),
        "params_before": before, "params_after": after})
