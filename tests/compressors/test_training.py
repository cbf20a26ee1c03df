"""The shared training loop's pieces: batches that depend only on (step, seed), the optimizer's decay groups,
and the baseline fine-tune's settings mapping onto it (its resume is tested end to end in test_resume.py)."""
from pathlib import Path

import numpy as np
import pytest
from transformers import AutoModelForSequenceClassification

from lambdaslim.compressors.base import StageError
from lambdaslim.compressors.training import NO_DECAY, TrainingSpec, _optimizer, batch_indices, train_loop
from lambdaslim.data.splits import Split
from lambdaslim.testing.tiny import make_rows

ROOT = Path(__file__).resolve().parents[2]


def test_a_batch_depends_only_on_step_and_seed_and_an_epoch_sees_each_row_once():
    lengths = tuple(np.random.default_rng(0).integers(1, 40, 1000).tolist())
    epoch = [batch_indices(s, lengths, 10, 7) for s in range(100)]
    assert [batch_indices(s, lengths, 10, 7) for s in (5, 50, 99)] == [epoch[5], epoch[50], epoch[99]]
    assert batch_indices(5, lengths, 10, 8) != epoch[5]  # another seed, other batches
    rows = [i for batch in epoch for i in batch]
    assert len(rows) == len(set(rows)) == 1000 and all(len(b) == 10 for b in epoch)
    assert batch_indices(100, lengths, 10, 7) not in epoch  # the next epoch is shuffled afresh
    # Length-bucketed: a batch's texts are far more alike in length than a random draw of ten.
    spread = np.mean([np.ptp([lengths[i] for i in b]) for b in epoch])
    assert spread < 0.25 * np.ptp(lengths)


def test_biases_and_norm_scales_get_no_weight_decay(tiny_model_dir):
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir)
    params = list(model.named_parameters())
    optimizer, scheduler = _optimizer(params, TrainingSpec(steps=10, weight_decay=0.1, warmup_ratio=0.2))
    decayed, plain = optimizer.param_groups
    names = {id(p): n for n, p in params}
    assert decayed["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
    assert {names[id(p)] for p in plain["params"]} == {n for n, _ in params if n.endswith(NO_DECAY)}
    assert any(n.endswith("LayerNorm.weight") for n in (names[id(p)] for p in plain["params"]))
    assert scheduler.get_last_lr()[0] == 0.0  # warm-up starts from zero: 2 of 10 steps


def test_a_train_split_smaller_than_one_batch_is_a_stage_error(tiny_model_dir):
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir)
    rows = make_rows(4, 1)
    split = Split([t for t, _ in rows], np.array([y for _, y in rows]))
    with pytest.raises(StageError, match="has 4 rows, fewer than one batch of 8"):
        train_loop(model, None, split, None, TrainingSpec(batch_size=8), None, "k", "probe")
    with pytest.raises(StageError, match="has 0 rows"):
        train_loop(model, None, None, None, TrainingSpec(batch_size=8), None, "k", "probe")
    assert all(p.requires_grad for p in model.parameters())  # refused before touching the model


def test_the_baseline_fine_tune_runs_the_loop_with_its_params_yaml_settings():
    from lambdaslim.baseline import SPEC_KEYS, checkpoint_key, load_config

    cfg = load_config(ROOT / "params.yaml")
    spec = cfg.training
    assert isinstance(spec, TrainingSpec) and spec.max_minutes is None
    assert {k: getattr(spec, k) for k in SPEC_KEYS} == {k: getattr(cfg, k) for k in SPEC_KEYS}
    assert cfg.work_dir == Path(cfg.output_dir + ".work")  # beside the output, which dvc removes before a run
    # The checkpoint is keyed by what changes the trajectory, not by how often it is written.
    assert checkpoint_key(cfg) == checkpoint_key(cfg.model_copy(update={"checkpoint_every": 7, "threads": 3}))
    assert checkpoint_key(cfg) != checkpoint_key(cfg.model_copy(update={"lr": cfg.lr * 2}))
