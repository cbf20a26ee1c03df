"""A resumable fine-tuning loop shared by everything that trains: the techniques that do (distill,
prune_structured's recovery) and the baseline fine-tune (lambdaslim.baseline).

Not a technique itself: it registers nothing. AdamW with linear warm-up and decay over `steps`,
length-bucketed batches whose order depends only on (step, seed), a budget in steps and optionally in
minutes, and checkpoints in a work folder so an interrupted run resumes where it stopped and ends after
the same number of steps, with the same weights, as an uninterrupted one.
"""
from __future__ import annotations

import functools
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from lambdaslim.compressors.base import StageError
from lambdaslim.store.atomic import atomic_path

CHECKPOINT = "train-state.pt"
NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight")  # biases and norm scales: no weight decay


class TrainingSpec(BaseModel):
    """How a technique trains: the same keys wherever a stage trains."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    steps: int = Field(1000, gt=0, le=1_000_000, description="optimizer steps (the schedule's length)")
    max_minutes: float | None = Field(None, gt=0, description="stop earlier when this much training time is spent")
    lr: float = Field(1e-4, gt=0, le=1)
    batch_size: int = Field(32, ge=1, le=4096)
    warmup_ratio: float = Field(0.06, ge=0, lt=1)
    weight_decay: float = Field(0.01, ge=0)
    max_length: int | None = Field(64, ge=8, le=512, description="tokens per training text (SST-2 averages ~13)")
    freeze_embeddings: bool = Field(True, description="the word-embedding table is half of a small encoder; "
                                                      "freezing it cuts a step by about a third")
    checkpoint_every: int = Field(100, gt=0)
    seed: int = 42


@dataclass
class TrainStats:
    steps_done: int
    steps_planned: int
    resumed_from_step: int
    minutes: float  # training time over every attempt, resumed ones included
    loss_first: float | None  # mean of the first 50 steps' loss (of this attempt's log)
    loss_last: float | None  # mean of the last 50

    def info(self, prefix: str = "train") -> dict:
        return {f"{prefix}_steps": self.steps_done, f"{prefix}_steps_planned": self.steps_planned,
                f"{prefix}_resumed_from_step": self.resumed_from_step, f"{prefix}_minutes": round(self.minutes, 3),
                f"{prefix}_loss_first": self.loss_first, f"{prefix}_loss_last": self.loss_last}


@functools.lru_cache(maxsize=2)
def _epoch_plan(lengths: tuple[int, ...], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Shuffled batches of similar-length texts: SST-2 averages 13 tokens, so padding to the longest
    of a random batch (~50) would triple the compute per step."""
    rng = random.Random(seed * 100_003 + epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    pool = batch_size * 64  # sort within pools of 64 batches: similar lengths, still well mixed
    batches = []
    for start in range(0, len(order) - batch_size + 1, pool):
        chunk = sorted(order[start : start + pool], key=lambda i: lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk) - batch_size + 1, batch_size)]
    rng.shuffle(batches)
    return batches


def batch_indices(step: int, lengths: tuple[int, ...], batch_size: int, seed: int) -> list[int]:
    """The batch for `step` depends only on (step, seed), so a resumed run sees the same data."""
    per_epoch = len(lengths) // batch_size
    epoch, pos = divmod(step, per_epoch)
    plan = _epoch_plan(lengths, batch_size, seed, epoch)
    return plan[pos % len(plan)]


def _after_step(step: int) -> None:
    """Called after every optimizer step (tests interrupt a run here)."""


def train_loop(model, loss_fn: Callable, split, tokenizer, spec: TrainingSpec, work_dir: Path | None,
               run_key: str, desc: str, extra_params: list | None = None) -> TrainStats:
    """Train `model` in place. `loss_fn(model, enc, labels) -> scalar loss tensor` gets a tokenized batch.

    `run_key` names the configuration a checkpoint belongs to; one written for anything else is ignored.
    `extra_params` are trained too (e.g. a projection used only by the loss) and checkpointed with the model.
    """
    import torch
    from tqdm import tqdm

    if split is None or len(split) < spec.batch_size:
        raise StageError(f"{desc}: the train split has {0 if split is None else len(split)} rows, fewer than one "
                         f"batch of {spec.batch_size}")
    torch.manual_seed(spec.seed)
    if spec.freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    extra = list(extra_params or [])
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    params += [(f"extra.{i}", p) for i, p in enumerate(extra)]
    optimizer, scheduler = _optimizer(params, spec)
    ckpt = work_dir / CHECKPOINT if work_dir is not None else None
    step, spent = _resume(ckpt, run_key, model, extra, optimizer, scheduler)
    resumed = step
    lengths = tuple(len(t.split()) for t in split.texts)  # word count: a free proxy for token count
    model.train()
    losses: list[float] = []
    started = time.perf_counter()
    elapsed = lambda: spent + (time.perf_counter() - started) / 60  # noqa: E731
    bar = tqdm(total=spec.steps, initial=step, desc=desc, unit="step", mininterval=2.0)
    while step < spec.steps and (spec.max_minutes is None or elapsed() < spec.max_minutes):
        idx = batch_indices(step, lengths, spec.batch_size, spec.seed)
        enc = tokenizer([split.texts[i] for i in idx], padding=True, truncation=True,
                        max_length=spec.max_length, return_tensors="pt")
        loss = loss_fn(model, enc, torch.from_numpy(split.labels[idx]))
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for _, p in params], 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        losses.append(loss.item())
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}", refresh=False)
        if ckpt is not None and step % spec.checkpoint_every == 0 and step < spec.steps:
            _save(ckpt, model, extra, optimizer, scheduler, step, elapsed(), run_key)
        _after_step(step)
    bar.close()
    model.eval()
    mean = lambda xs: round(float(np.mean(xs)), 5) if xs else None  # noqa: E731
    return TrainStats(step, spec.steps, resumed, elapsed(), mean(losses[:50]), mean(losses[-50:]))


def _optimizer(params: list, spec: TrainingSpec):
    """AdamW (no decay on biases and norm scales) and its linear warm-up/decay schedule over spec.steps."""
    import torch
    from transformers import get_linear_schedule_with_warmup

    optimizer = torch.optim.AdamW([
        {"params": [p for n, p in params if not n.endswith(NO_DECAY)], "weight_decay": spec.weight_decay},
        {"params": [p for n, p in params if n.endswith(NO_DECAY)], "weight_decay": 0.0}], lr=spec.lr)
    return optimizer, get_linear_schedule_with_warmup(optimizer, math.ceil(spec.warmup_ratio * spec.steps), spec.steps)


def _resume(ckpt: Path | None, run_key: str, model, extra, optimizer, scheduler) -> tuple[int, float]:
    """Load the checkpoint written for `run_key`, if there is one: (steps done, minutes spent), else (0, 0)."""
    import torch

    if ckpt is None or not ckpt.exists():
        return 0, 0.0
    state = torch.load(ckpt, weights_only=True)  # tensors and plain values only: never runs code
    if state.get("run") != run_key:
        return 0, 0.0
    model.load_state_dict(state["model"])
    for p, saved in zip(extra, state["extra"]):
        p.data.copy_(saved)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    return state["step"], state["minutes"]


def _save(ckpt: Path, model, extra, optimizer, scheduler, step: int, minutes: float, run_key: str) -> None:
    import torch

    with atomic_path(ckpt) as tmp:  # a kill mid-write leaves the previous checkpoint whole
        torch.save({"model": model.state_dict(), "extra": [p.detach() for p in extra],
                    "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "torch_rng": torch.get_rng_state(), "step": step, "minutes": minutes, "run": run_key}, tmp)
