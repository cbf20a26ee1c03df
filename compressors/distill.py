"""Knowledge distillation: train a smaller student to match the teacher's softened predictions on the
train split (plus the true labels, and optionally the teacher's hidden states layer by layer).

Reference: Hinton, Vinyals & Dean, 2015, "Distilling the Knowledge in a Neural Network" (the
temperature-softened KL loss); Sun et al., 2019, "Patient Knowledge Distillation for BERT Model
Compression" (EMNLP; intermediate-layer loss, students initialised from teacher layers); Jiao et al.,
2020, "TinyBERT" (hidden-state MSE through a learned projection when widths differ).

The student is the stage's input (typically the output of drop_layers), a given directory
(`student_dir`), or a smaller copy of the teacher's architecture (`student_config`). The teacher is
the pipeline's model unless `teacher_dir` names another. Training is resumable (lambdaslim.compressors.training).
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lambdaslim.compressors.base import (WEIGHT_FILES, Artifact, StageConfigBase, StageContext, StageError,
                                         StageResult, copy_side_files, register)
from lambdaslim.compressors.training import TrainingSpec, train_loop

PROBE_TEXTS = 256  # the same texts before and after training show whether the KD loss fell


class StudentArchitecture(BaseModel):
    """A smaller copy of the teacher's architecture; unset fields keep the teacher's value."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    num_hidden_layers: int = Field(ge=1, le=48)
    hidden_size: int | None = Field(None, ge=8, le=4096)
    num_attention_heads: int | None = Field(None, ge=1, le=64)
    intermediate_size: int | None = Field(None, ge=8, le=16384)


class DistillConfig(StageConfigBase):
    kind: Literal["distill"] = "distill"
    teacher_dir: str | None = Field(None, description="default: the pipeline's model")
    student_dir: str | None = Field(None, description="default: the stage's input (e.g. drop_layers' output)")
    student_config: StudentArchitecture | None = None
    temperature: float = Field(2.0, gt=0, le=20)
    hard_label_weight: float = Field(0.5, ge=0, le=1, description="weight of cross-entropy on the true labels; "
                                                                  "the KD loss gets 1 minus it")
    hidden_weight: float = Field(0.0, ge=0, description="weight of the layer-to-layer hidden-state MSE (0 = off)")
    training: TrainingSpec = TrainingSpec()

    @model_validator(mode="after")
    def _one_student(self):
        if self.student_dir is not None and self.student_config is not None:
            raise ValueError("give student_dir or student_config, not both")
        return self


# data.calibration (when declared, else data.train) holds the probe texts its before/after KD loss is measured on.
@register(DistillConfig, accepts=("pytorch",), produces="pytorch", uses=("train", "teacher", "calibration"))
def distill(cfg: DistillConfig, inp: Artifact, out: Path, ctx: StageContext) -> StageResult:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if cfg.teacher_dir is None and ctx.teacher is None:
        raise StageError("distill: no teacher (the runner passes the pipeline's model; or set teacher_dir)")
    teacher_path = ctx.resolve(cfg.teacher_dir) if cfg.teacher_dir else ctx.teacher.path
    teacher = AutoModelForSequenceClassification.from_pretrained(teacher_path).eval()
    torch.manual_seed(cfg.training.seed)  # a student built from student_config starts from the same draw
    student, source = _student(cfg, inp, teacher, ctx)
    if cfg.student_config is None and source.resolve() == Path(teacher_path).resolve():
        raise StageError("distill: the student would be the teacher itself; put drop_layers before distill, "
                         "or give student_config or student_dir")
    if student.config.num_labels != teacher.config.num_labels:
        raise StageError(f"distill: the student has {student.config.num_labels} labels, the teacher "
                         f"{teacher.config.num_labels}")
    tokenizer = AutoTokenizer.from_pretrained(source)
    if tokenizer.get_vocab() != AutoTokenizer.from_pretrained(teacher_path).get_vocab():
        raise StageError("distill: student and teacher tokenizers differ; both must read the same token ids")
    proj = _projection(student, teacher) if cfg.hidden_weight > 0 else None
    mapping = layer_mapping(student.config.num_hidden_layers, teacher.config.num_hidden_layers)

    def loss_fn(model, enc, labels):
        hidden = cfg.hidden_weight > 0
        s = model(**enc, output_hidden_states=hidden)
        with torch.no_grad():
            t = teacher(**enc, output_hidden_states=hidden)
        loss = (1 - cfg.hard_label_weight) * kd_loss(s.logits, t.logits, cfg.temperature)
        loss = loss + cfg.hard_label_weight * torch.nn.functional.cross_entropy(s.logits, labels)
        if hidden:
            mse = [torch.nn.functional.mse_loss(proj(s.hidden_states[i]) if proj is not None else s.hidden_states[i],
                                                t.hidden_states[j]) for i, j in mapping]
            loss = loss + cfg.hidden_weight * torch.stack(mse).mean()
        return loss

    probe = (ctx.calibration or ctx.train).texts[:PROBE_TEXTS] if (ctx.calibration or ctx.train) else []
    before = probe_kd(student, teacher, tokenizer, probe, cfg)
    stats = train_loop(student, loss_fn, ctx.train, tokenizer, cfg.training, ctx.work_dir,
                       ctx.stage_key or "distill", "distill", list(proj.parameters()) if proj is not None else None)
    after = probe_kd(student, teacher, tokenizer, probe, cfg)
    copy_side_files(source, out, skip=WEIGHT_FILES)
    student.save_pretrained(out, safe_serialization=True)
    return StageResult(Artifact(out, "pytorch"), {
        **stats.info(), "teacher_layers": teacher.config.num_hidden_layers,
        "student_layers": student.config.num_hidden_layers,
        "teacher_params": sum(p.numel() for p in teacher.parameters()),
        "student_params": sum(p.numel() for p in student.parameters()),
        "kd_loss_before": before[0], "kd_loss_after": after[0],
        "teacher_agreement_before": before[1], "teacher_agreement_after": after[1],
        "student_source": ("student_config" if cfg.student_config else "input" if source == inp.path
                           else str(source))})


def kd_loss(student_logits, teacher_logits, temperature: float):
    """KL(teacher || student) on temperature-softened distributions, scaled by T^2 so its gradient size
    does not shrink as T grows (Hinton et al.)."""
    import torch.nn.functional as F

    t = temperature
    return F.kl_div(F.log_softmax(student_logits / t, -1), F.softmax(teacher_logits / t, -1),
                    reduction="batchmean") * t * t


def layer_mapping(student_layers: int, teacher_layers: int) -> list[tuple[int, int]]:
    """(student, teacher) hidden-state indices, evenly spread; index 0 is the embedding output.
    With 3 of 6 layers: (1, 2), (2, 4), (3, 6) -- the layers drop_layers(num_layers=3) keeps."""
    return [(i, round(i * teacher_layers / student_layers)) for i in range(1, student_layers + 1)]


def probe_kd(student, teacher, tokenizer, texts: list[str], cfg: DistillConfig) -> tuple[float | None, float | None]:
    """Mean KD loss and argmax agreement with the teacher on fixed texts."""
    import torch

    if not texts:
        return None, None
    losses, agree = [], 0
    with torch.inference_mode():
        for i in range(0, len(texts), 64):
            enc = tokenizer(texts[i : i + 64], padding=True, truncation=True,
                            max_length=cfg.training.max_length, return_tensors="pt")
            s, t = student(**enc).logits, teacher(**enc).logits
            losses.append(float(kd_loss(s, t, cfg.temperature)) * len(s))
            agree += int((s.argmax(-1) == t.argmax(-1)).sum())
    return round(sum(losses) / len(texts), 6), round(agree / len(texts), 5)


def _student(cfg: DistillConfig, inp: Artifact, teacher, ctx: StageContext):
    """(model, folder its tokenizer and side files come from)."""
    from transformers import AutoModelForSequenceClassification

    if cfg.student_dir is not None:
        path = ctx.resolve(cfg.student_dir)
        return AutoModelForSequenceClassification.from_pretrained(path), path
    if cfg.student_config is None:
        return AutoModelForSequenceClassification.from_pretrained(inp.path), inp.path
    arch = {k: v for k, v in cfg.student_config.model_dump().items() if v is not None}
    config = teacher.config.__class__.from_dict({**teacher.config.to_dict(), **arch})
    if config.hidden_size % config.num_attention_heads:
        raise StageError(f"distill: student hidden_size {config.hidden_size} is not a multiple of its "
                         f"{config.num_attention_heads} attention heads")
    student = AutoModelForSequenceClassification.from_config(config)
    if config.hidden_size == teacher.config.hidden_size:  # same width: start from the teacher's embeddings
        student.base_model.embeddings.load_state_dict(teacher.base_model.embeddings.state_dict())
    return student, Path(ctx.resolve(cfg.teacher_dir) if cfg.teacher_dir else ctx.teacher.path)


def _projection(student, teacher):
    """Maps student hidden states to the teacher's width; trained with the student, then discarded."""
    import torch

    hs, ht = student.config.hidden_size, teacher.config.hidden_size
    return None if hs == ht else torch.nn.Linear(hs, ht)
