"""Structured pruning: remove whole attention heads and FFN neurons, so the matrices (and the ONNX file) shrink.

Zeroing weights (prune_magnitude) leaves every shape, hence the file size and the CPU latency, as they were;
this stage slices the Linear layers instead.

References: Michel, Levy & Neubig, 2019, "Are Sixteen Heads Really Better than One?" (NeurIPS; head
importance as the loss gradient w.r.t. a head mask); Molchanov et al., 2019, "Importance Estimation for
Neural Network Pruning" (CVPR; first-order Taylor importance of a group, |sum of w * dL/dw|); Kwon et al.,
2022, "A Fast Post-Training Pruning Framework for Transformers" (NeurIPS; mask gradients of heads and FFN
neurons from a few batches, no retraining); Li et al., 2017, "Pruning Filters for Efficient ConvNets"
(ICLR; the group L1 norm used by `magnitude`).

Importance of a head or neuron:
- magnitude: L1 norm of the weights it owns (its Q/K/V rows and attention-output columns; its FFN input row
  and output column). Needs no data.
- gradient: |sum of w * dL/dw| over its output-side weights (a head's attention-output columns, a neuron's
  FFN-output column), which is exactly the gradient of the loss w.r.t. a mask on that unit; summed per batch
  over `importance_batches` batches of data.train (a sample of training data, as Kwon et al. use).

The result reloads with the stock classes (never trust_remote_code): heads go through transformers'
prune_heads, which records config.pruned_heads so from_pretrained prunes a fresh model the same way. The
config has one intermediate_size, so every layer keeps the same number of FFN neurons (ranked within its
layer). Heads are ranked per layer by default (the same count everywhere); `heads_scope: global` ranks all
heads together as Michel et al. do, leaving layers with different head counts. Every layer keeps at least one
head and one neuron. Both layouts export to ONNX, and optimize_onnx still fuses every attention: ONNX Runtime
reads each layer's head count from the graph (its "Input hidden size ... is not same" warning is harmless).

data.train is required (and keys the stage) only when the config reads it: gradient importance or recovery.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from lambdaslim.compressors.base import (WEIGHT_FILES, Artifact, StageConfigBase, StageContext, StageError,
                                         StageResult, copy_side_files, register)
from lambdaslim.compressors.drop_layers import encoder_layers
from lambdaslim.compressors.training import TrainingSpec, train_loop
from lambdaslim.store.atomic import write_json_atomic

IMPORTANCE_BATCH = 32  # rows per importance batch
PLAN = "prune-plan.json"  # in the work folder: a resumed recovery prunes exactly as the killed attempt did


class PruneStructuredConfig(StageConfigBase):
    kind: Literal["prune_structured"] = "prune_structured"
    heads_ratio: float = Field(0.0, ge=0, lt=1, description="fraction of attention heads to remove")
    neurons_ratio: float = Field(0.0, ge=0, lt=1, description="fraction of FFN neurons to remove, in every layer")
    importance: Literal["magnitude", "gradient"] = Field("gradient", description="gradient reads data.train")
    importance_batches: int = Field(8, ge=1, le=1000, description=f"batches of {IMPORTANCE_BATCH} rows")
    heads_scope: Literal["per_layer", "global"] = Field("per_layer", description="rank heads within each layer "
                                                        "(same count everywhere) or across the whole model")
    recovery: TrainingSpec | None = Field(None, description="fine-tune on data.train with cross-entropy afterwards")

    @model_validator(mode="after")
    def _prunes_something(self):
        if self.heads_ratio == 0 and self.neurons_ratio == 0:
            raise ValueError("heads_ratio and neurons_ratio are both 0: nothing to prune")
        return self

    @property
    def uses(self) -> tuple[str, ...]:
        """Narrows the technique's uses: data.train only when this configuration reads it."""
        return ("train",) if self.recovery is not None or self.importance == "gradient" else ()


@dataclass(frozen=True)
class Parts:
    """Where one model family keeps a layer's prunable Linear layers, and the config keys that size them."""

    qkv: tuple[str, str, str]
    attn_out: str
    ffn_in: str
    ffn_out: str
    heads_key: str
    ffn_key: str


FAMILIES = (  # BERT/RoBERTa/ELECTRA/XLM-R, then DistilBERT
    Parts(("attention.self.query", "attention.self.key", "attention.self.value"), "attention.output.dense",
          "intermediate.dense", "output.dense", "num_attention_heads", "intermediate_size"),
    Parts(("attention.q_lin", "attention.k_lin", "attention.v_lin"), "attention.out_lin",
          "ffn.lin1", "ffn.lin2", "n_heads", "hidden_dim"),
)


def _parts(layer) -> Parts:
    names = {n for n, _ in layer.named_modules()}
    for p in FAMILIES:
        if {*p.qkv, p.attn_out, p.ffn_in, p.ffn_out} <= names:
            return p
    raise StageError(f"prune_structured: unknown layer layout {type(layer).__name__} "
                     f"(supports BERT-like and DistilBERT)")


def _alive_heads(model, parts: Parts, n_layers: int) -> list[list[int]]:
    """Original ids of the heads each layer still has (an input may already be pruned)."""
    total = getattr(model.config, parts.heads_key)
    pruned = {int(k): set(v) for k, v in model.config.pruned_heads.items()}
    return [[h for h in range(total) if h not in pruned.get(i, ())] for i in range(n_layers)]


def _head_view(weight, n_heads: int, dim: int):
    """A Linear weight split per head along `dim` (0: Q/K/V rows, 1: attention-output columns)."""
    return weight.unflatten(dim, (n_heads, -1)).movedim(dim, 0).flatten(1)


def _magnitude(layers, parts: Parts, alive) -> tuple[list, list]:
    heads, neurons = [], []
    for layer, a in zip(layers, alive):
        m = layer.get_submodule
        qkv = sum(_head_view(m(n).weight, len(a), 0).abs().sum(1) for n in parts.qkv)
        heads.append(qkv + _head_view(m(parts.attn_out).weight, len(a), 1).abs().sum(1))
        neurons.append(m(parts.ffn_in).weight.abs().sum(1) + m(parts.ffn_out).weight.abs().sum(0))
    return heads, neurons


def _gradient(model, layers, parts: Parts, alive, split, tokenizer, batches: int, max_length: int):
    import torch
    import torch.nn.functional as F

    if split is None or len(split) == 0:
        raise StageError("prune_structured: gradient importance needs data.train, which is empty or missing")
    outs = [(layer.get_submodule(parts.attn_out).weight, layer.get_submodule(parts.ffn_out).weight) for layer in layers]
    for p in model.parameters():  # only the output-side weights need gradients; activations still flow back
        p.requires_grad_(False)
    for w in (w for pair in outs for w in pair):
        w.requires_grad_(True)
    heads = [torch.zeros(len(a)) for a in alive]
    neurons = [torch.zeros(ffn.shape[1]) for _, ffn in outs]
    order = np.random.default_rng(0).permutation(len(split))[: batches * IMPORTANCE_BATCH]
    model.eval()
    for start in range(0, len(order), IMPORTANCE_BATCH):
        idx = order[start : start + IMPORTANCE_BATCH]
        enc = tokenizer([split.texts[i] for i in idx], padding=True, truncation=True, max_length=max_length,
                        return_tensors="pt")
        F.cross_entropy(model(**enc).logits, torch.from_numpy(split.labels[idx])).backward()
        with torch.no_grad():
            for i, (attn, ffn) in enumerate(outs):  # a batch's mask gradient, then its magnitude (Michel et al.)
                heads[i] += _head_view(attn * attn.grad, len(alive[i]), 1).sum(1).abs()
                neurons[i] += (ffn * ffn.grad).sum(0).abs()
                attn.grad, ffn.grad = None, None
    for p in model.parameters():
        p.requires_grad_(True)
    return heads, neurons


def _count(ratio: float, n: int) -> int:
    """How many of n to remove: the nearest count, leaving at least one."""
    return min(int(ratio * n + 0.5), n - 1)


def plan_heads(scores, alive, ratio: float, scope: str) -> list[list[int]]:
    """Per layer, the original ids of the heads to remove (the least important)."""
    if scope == "per_layer":
        return [sorted(a[j] for j in np.argsort(s.numpy(), kind="stable")[: _count(ratio, len(a))])
                for s, a in zip(scores, alive)]
    ranked = sorted((float(s[j]), i, j) for i, s in enumerate(scores) for j in range(len(s)))
    left, plan = [len(a) for a in alive], [[] for _ in alive]
    todo = _count(ratio, sum(left))
    for _, i, j in ranked:
        if todo and left[i] > 1:  # never a layer without heads: the next-least-important head goes instead
            left[i], todo = left[i] - 1, todo - 1
            plan[i].append(alive[i][j])
    return [sorted(h) for h in plan]


def plan_neurons(scores, ratio: float) -> list[list[int]]:
    """Per layer, the indices of the FFN neurons to keep (the same count in every layer)."""
    keep = len(scores[0]) - _count(ratio, len(scores[0]))
    return [sorted(np.argsort(-s.numpy(), kind="stable")[:keep].tolist()) for s in scores]


def _replace(layer, path: str, module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(layer.get_submodule(parent), name, module)


def score_units(model, importance: str, split=None, tokenizer=None, batches: int = 8, max_length: int = 128):
    """(layers, parts, alive heads, per-layer head scores, per-layer neuron scores) of a loaded model."""
    import torch

    owner, attr = encoder_layers(model)
    layers = getattr(owner, attr)
    parts = _parts(layers[0])
    alive = _alive_heads(model, parts, len(layers))
    if importance == "gradient":
        return layers, parts, alive, *_gradient(model, layers, parts, alive, split, tokenizer, batches, max_length)
    with torch.no_grad():
        return layers, parts, alive, *_magnitude(layers, parts, alive)


@register(PruneStructuredConfig, accepts=("pytorch",), produces="pytorch", uses=("train",))
def prune_structured(cfg: PruneStructuredConfig, inp: Artifact, out: Path, ctx: StageContext) -> StageResult:
    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.pytorch_utils import prune_linear_layer

    model = AutoModelForSequenceClassification.from_pretrained(inp.path)
    tokenizer = AutoTokenizer.from_pretrained(inp.path)
    saved = ctx.work_dir / PLAN if ctx.work_dir is not None else None
    plan = json.loads(saved.read_text()) if saved is not None and saved.exists() else {}
    resumed = bool(ctx.stage_key) and plan.get("run") == ctx.stage_key  # then only free magnitude scores are taken
    layers, parts, alive, heads, neurons = score_units(
        model, "magnitude" if resumed else cfg.importance, ctx.train, tokenizer, cfg.importance_batches, ctx.max_length)
    params_before = sum(p.numel() for p in model.parameters())
    neurons_before = sum(map(len, neurons))
    if not resumed:
        plan = {"run": ctx.stage_key, "heads": plan_heads(heads, alive, cfg.heads_ratio, cfg.heads_scope),
                "neurons": plan_neurons(neurons, cfg.neurons_ratio)}
        if saved is not None and cfg.recovery is not None:  # renamed into place: a kill never leaves half a plan
            write_json_atomic(saved, plan)
    model.prune_heads({i: h for i, h in enumerate(plan["heads"]) if h})
    for layer, keep in zip(layers, plan["neurons"]):
        index = torch.tensor(keep, dtype=torch.long)
        _replace(layer, parts.ffn_in, prune_linear_layer(layer.get_submodule(parts.ffn_in), index, dim=0))
        _replace(layer, parts.ffn_out, prune_linear_layer(layer.get_submodule(parts.ffn_out), index, dim=1))
    setattr(model.config, parts.ffn_key, len(plan["neurons"][0]))
    info = {}
    if cfg.recovery is not None:
        loss = lambda m, enc, labels: F.cross_entropy(m(**enc).logits, labels)  # noqa: E731
        info = train_loop(model, loss, ctx.train, tokenizer, cfg.recovery, ctx.work_dir, ctx.stage_key,
                          desc="prune_structured recovery").info()
    model.eval()
    copy_side_files(inp.path, out, skip=WEIGHT_FILES)
    model.save_pretrained(out, safe_serialization=True)
    heads_after = [len(a) - len(h) for a, h in zip(alive, plan["heads"])]
    return StageResult(Artifact(out, "pytorch"), info | {
        "params_before": params_before, "params_after": sum(p.numel() for p in model.parameters()),
        "heads_before": sum(map(len, alive)), "heads_after": sum(heads_after),
        "heads_per_layer": ",".join(map(str, heads_after)), "neurons_before": neurons_before,
        "neurons_after": sum(map(len, plan["neurons"])), "importance": cfg.importance})
