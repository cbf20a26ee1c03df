"""Crashes lose no work: `lambdaslim run` killed with SIGKILL and run again finishes with the records of an
uninterrupted run; a half-written stage is never taken for a finished one; the MLflow run a killed process
left RUNNING is closed as KILLED and linked from the run that resumed; the baseline trainer resumes from
its checkpoint, loaded with weights_only=True.

Every run here is the real CLI in a fresh interpreter (lambdaslim.testing.cli_runs), killed for real.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from lambdaslim.compressors import TECHNIQUES
from lambdaslim.store.locks import process_alive, sweep_stale_temps
from lambdaslim.store.atomic import write_json_atomic
from lambdaslim.run.session import Session
from lambdaslim.testing.tiny import make_rows, write_tsv
from lambdaslim.tracking.tracker import MlflowTracker
from lambdaslim.testing.cli_runs import run_cli, tiny_project
from lambdaslim.testing.kill_resume import kill_and_resume
from lambdaslim.testing.mlflow_runs import mlflow_runs, parents_and_children
from lambdaslim.testing.run_outputs import comparable, stage_store_problems


def dead_pid() -> int:
    """The pid of a process that has just ended."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    assert not process_alive(proc.pid)
    return proc.pid


# ------------------------------------------------------------------------------------------ kill -9 and resume


@pytest.fixture(scope="module")
def uninterrupted(tiny_model_dir, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("uninterrupted")
    res = run_cli(tiny_project(root, tiny_model_dir), root)
    assert res.rc == 0, res.stderr[-3000:]
    # Progress lines the kill points below refer to.
    assert res.lines[3] == "[2/3] export_onnx ..." and res.lines[5] == "[3/3] quantize_dynamic ...", res.lines
    return comparable(json.loads((root / "artifacts" / "tiny" / "report.json").read_text()), root)


@pytest.mark.parametrize("after_lines", [4], ids=["during-export"])  # bench/bench_reliability.py tries every line
def test_killed_run_resumes_to_the_same_records(after_lines, uninterrupted, tiny_model_dir, tmp_path):
    trial = kill_and_resume(tmp_path / "project", tiny_model_dir, uninterrupted, after_lines)
    assert trial.killed, "the run finished before it could be killed"
    assert trial.identical, trial.detail
    assert trial.killed_run_closed, "the killed run was not closed as KILLED and linked from the resumed run"
    assert trial.clean_store, trial.detail


def test_resumed_run_reuses_stages_and_closes_the_dangling_mlflow_run(tiny_model_dir, tmp_path):
    root = tmp_path / "project"
    file = tiny_project(root, tiny_model_dir)
    first = run_cli(file, root, kill_after_lines=6)  # export_onnx finished and recorded; quantize_dynamic running
    assert first.killed
    uri = f"sqlite:///{root / 'mlflow.db'}"
    parents, children = parents_and_children(mlflow_runs(uri, "tiny"))
    assert [p.info.status for p in parents] == ["RUNNING"]  # what a kill -9 leaves behind
    killed = parents[0]
    assert killed.data.tags["lambdaslim.pid"] == str(first.pid) and killed.data.tags["lambdaslim.host"]

    second = run_cli(file, root)
    assert second.rc == 0, second.stderr[-3000:]
    assert any(line.startswith("[2/3] export_onnx: ") and line.endswith(", cached)") for line in second.lines)
    parents, children = parents_and_children(mlflow_runs(uri, "tiny"))
    by_id = {p.info.run_id: p for p in parents}
    old, new = by_id[killed.info.run_id], next(p for p in parents if p.info.run_id != killed.info.run_id)
    assert old.info.status == "KILLED" and old.data.tags["lambdaslim.resumed_by"] == new.info.run_id
    assert "ended without closing this run" in old.data.tags["lambdaslim.killed"]
    assert new.info.status == "FINISHED" and new.data.tags["lambdaslim.resumes"] == old.info.run_id
    assert not [c for c in children if c.info.status == "RUNNING"]
    assert {c.info.run_name for c in children if c.data.tags["mlflow.parentRunId"] == new.info.run_id} == {
        "baseline", "export_onnx", "quantize_dynamic"}
    assert stage_store_problems(root / "artifacts" / "stages") == []


# ------------------------------------------------------------------------------------------ half-written outputs


def test_half_written_stage_is_never_taken_for_a_finished_one(make_project, tmp_path):
    file = make_project("  - kind: export_onnx\n")
    s = Session.open(file)
    step = s.steps()[1]
    model, key = s.baseline()
    out = s.stage_store / f"export_onnx-{s.stage_key(key, TECHNIQUES['export_onnx'], step.cfg)[:16]}"
    # What a process killed mid-stage leaves (a temporary folder), and a folder at the final name that no
    # finished stage wrote (no stage.json: e.g. copied in by hand, or by a tool that died half-way).
    stale = out.with_name(f".{out.name}.tmp-{dead_pid()}")
    stale.mkdir(parents=True)
    (stale / "model.onnx").write_bytes(b"half")
    out.mkdir()
    (out / "model.onnx").write_bytes(b"not a model")

    artifact, _, info, cached = s.execute(step, step.cfg, model, key)

    assert not cached and artifact.path == out and (out / "stage.json").is_file()
    assert (out / "model.onnx").stat().st_size > 1000 and info["max_abs_diff"] < 1e-3
    assert sweep_stale_temps(s.stage_store) == [stale] and not stale.exists()
    assert stage_store_problems(s.stage_store) == []


def test_sweep_removes_only_what_dead_processes_left(tmp_path):
    dead, alive = dead_pid(), os.getpid()
    # every temporary is named by store.atomic.temp_path: .<final name>.tmp-<pid> (.old-<pid> while swapped out)
    names = [f".export_onnx-0123.tmp-{dead}", f".report.json.tmp-{dead}", f".best.old-{dead}",
             f".export_onnx-0123.tmp-{alive}", f".plots.csv.tmp-{alive}", "export_onnx-0123", ".lock", "report.json"]
    for n in names:
        (tmp_path / n).mkdir() if "export" in n or "best" in n else (tmp_path / n).write_text("x")
    (tmp_path / "candidates").mkdir()
    (tmp_path / "candidates" / f".01-export_onnx.json.tmp-{dead}").write_text("{")
    removed = {p.relative_to(tmp_path).as_posix() for p in sweep_stale_temps(tmp_path, depth=1)}
    assert removed == {names[0], names[1], names[2], f"candidates/.01-export_onnx.json.tmp-{dead}"}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[3:] + ["candidates"])


def test_outputs_are_replaced_whole(tmp_path):
    """write_json_atomic never leaves a partial file under the real name, even with a reader in between."""
    target = tmp_path / "report.json"
    write_json_atomic(target, {"n": 1})
    write_json_atomic(target, {"n": "x" * 1_000_000})
    assert json.loads(target.read_text())["n"] == "x" * 1_000_000
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


# ------------------------------------------------------------------------------------------ MLflow dangling runs


def _run(client, exp, name, status, tags, parent=None):
    tags = dict(tags) | ({"mlflow.parentRunId": parent} if parent else {})
    rid = client.create_run(exp, run_name=name, tags=tags).info.run_id
    if status != "RUNNING":
        client.set_terminated(rid, status)
    return rid


def test_runs_of_dead_processes_are_killed_others_left_alone(tmp_path):
    from lambdaslim.store.locks import hostname, process_started

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = MlflowTracker(uri, "tiny", tmp_path / "mlartifacts")
    c, exp = tracker.client, tracker.experiment_id
    me = {"lambdaslim.host": hostname(), "lambdaslim.pid": str(os.getpid()),
          "lambdaslim.pid_started": f"{process_started(os.getpid()):.2f}"}
    gone = me | {"lambdaslim.pid": str(dead_pid()), "lambdaslim.pipeline": "tiny"}
    dead = _run(c, exp, "dead", "RUNNING", gone)
    dead_child = _run(c, exp, "export_onnx", "RUNNING", {}, dead)
    dead_grandchild = _run(c, exp, "trial-1", "RUNNING", {}, dead_child)
    done_child = _run(c, exp, "baseline", "FINISHED", {}, dead)
    alive = _run(c, exp, "alive", "RUNNING", me | {"lambdaslim.pipeline": "tiny"})  # a concurrent run: untouched
    reused_pid = _run(c, exp, "reused", "RUNNING", me | {"lambdaslim.pipeline": "tiny", "lambdaslim.pid_started": "1.00"})
    other_host = _run(c, exp, "remote", "RUNNING", gone | {"lambdaslim.host": "elsewhere"})  # cannot tell: left
    other_pipeline = _run(c, exp, "other", "RUNNING", gone | {"lambdaslim.pipeline": "other"})
    untagged = _run(c, exp, "old", "RUNNING", {"lambdaslim.pipeline": "tiny"})  # before these tags existed

    new = tracker.start_pipeline("tiny", {"a": 1}, {})

    status = {rid: c.get_run(rid).info.status for rid in
              (dead, dead_child, dead_grandchild, done_child, alive, reused_pid, other_host, other_pipeline, untagged)}
    assert status == {dead: "KILLED", dead_child: "KILLED", dead_grandchild: "KILLED", done_child: "FINISHED",
                      alive: "RUNNING", reused_pid: "KILLED", other_host: "RUNNING", other_pipeline: "RUNNING",
                      untagged: "RUNNING"}
    tags = c.get_run(new).data.tags
    assert set(tags["lambdaslim.resumes"].split(",")) == {dead, reused_pid}
    assert tags["lambdaslim.pid"] == str(os.getpid()) and tags["lambdaslim.host"] == hostname()
    assert c.get_run(dead).data.tags["lambdaslim.resumed_by"] == new
    tracker.end_pipeline({}, {}, failed=False)
    assert c.get_run(new).info.status == "FINISHED"


# ------------------------------------------------------------------------------------------ training checkpoints


def _train_params(root: Path, model_dir: Path, steps: int, every: int, threads: int = 1) -> Path:
    write_tsv(root / "train.tsv", make_rows(256, 3))
    write_tsv(root / "eval.tsv", make_rows(64, 4))
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump({"train_baseline": {
        "base_model": str(model_dir), "train_file": str(root / "train.tsv"), "eval_file": str(root / "eval.tsv"),
        "output_dir": str(root / "out"), "steps": steps, "batch_size": 8, "lr": 1e-3, "max_length": 32,
        "threads": threads, "checkpoint_every": every, "freeze_embeddings": False,
        "metrics_file": str(root / "metrics.json")}}))
    return params


def _train(params: Path, kill_at_checkpoint: bool = False) -> tuple[int | None, str]:
    from lambdaslim.compressors.training import CHECKPOINT

    env = dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    proc = subprocess.Popen([sys.executable, "-m", "lambdaslim.baseline", str(params)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    state = params.parent / "out.work" / CHECKPOINT
    if kill_at_checkpoint:
        deadline = time.monotonic() + 600
        while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    out, _ = proc.communicate(timeout=600)
    return proc.returncode, out


def _weights(folder: Path) -> dict:
    from safetensors.numpy import load_file

    return load_file(str(folder / "model.safetensors"))


def _metrics(root: Path) -> dict:
    return json.loads((root / "metrics.json").read_text())


def test_training_killed_after_a_checkpoint_resumes_to_the_same_weights(tiny_model_dir, tmp_path):
    import numpy as np

    from lambdaslim.compressors.training import CHECKPOINT

    steps, every = 400, 20
    straight = _train_params(tmp_path / "straight", tiny_model_dir, steps, every)
    rc, out = _train(straight)
    assert rc == 0, out[-2000:]
    assert _metrics(straight.parent)["resumed_from_step"] == 0

    params = _train_params(tmp_path / "killed", tiny_model_dir, steps, every)
    rc, out = _train(params, kill_at_checkpoint=True)
    assert rc == -signal.SIGKILL, f"training ended before the kill ({rc}): {out[-2000:]}"
    assert (params.parent / "out.work" / CHECKPOINT).is_file() and not (params.parent / "out").exists()
    rc, out = _train(params)
    assert rc == 0, out[-2000:]
    metrics = _metrics(params.parent)
    resumed_at = metrics["resumed_from_step"]
    assert 0 < resumed_at < steps and resumed_at % every == 0 and metrics["steps"] == steps
    assert f"resumed from the checkpoint at step {resumed_at}" in out

    a, b = _weights(tmp_path / "straight" / "out"), _weights(tmp_path / "killed" / "out")
    assert a.keys() == b.keys()
    worst = max(float(np.abs(a[k] - b[k]).max()) for k in a)
    assert worst < 1e-5, f"resumed weights differ from an uninterrupted run's by {worst}"
    assert not (tmp_path / "killed" / "out.work").exists()  # removed once the model is in place
    assert sorted(p.name for p in (tmp_path / "killed").iterdir()) == [  # no temporary folder or file left
        "eval.tsv", "metrics.json", "out", "params.yaml", "train.tsv"]


def test_checkpoint_of_another_configuration_is_not_resumed(tiny_model_dir, tmp_path, capsys):
    import torch

    from lambdaslim.baseline import load_config, train
    from lambdaslim.compressors.training import CHECKPOINT

    params = _train_params(tmp_path, tiny_model_dir, steps=4, every=2, threads=0)  # 0: leave torch's threads alone
    (tmp_path / "out.work").mkdir()
    torch.save({"run": "another configuration", "step": 3}, tmp_path / "out.work" / CHECKPOINT)
    metrics = train(load_config(params))
    assert metrics["resumed_from_step"] == 0 and metrics["steps"] == 4 and _metrics(tmp_path) == metrics
    out = capsys.readouterr().out
    assert "written for other settings" in out and "resumed" not in out
    assert (tmp_path / "out" / "model.safetensors").is_file()


def test_checkpoint_loads_with_weights_only(tiny_model_dir, tmp_path):
    """What the training loop's checkpoint holds is tensors and plain values: torch.load(weights_only=True)
    reads it, and it is renamed into place (no temporary file is left)."""
    import torch
    from transformers import AutoModelForSequenceClassification, get_linear_schedule_with_warmup

    from lambdaslim.compressors.training import CHECKPOINT, _save

    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(input_ids=torch.tensor([[2, 7, 3]]), labels=torch.tensor([1])).loss.backward()
    opt.step()
    sched = get_linear_schedule_with_warmup(opt, 2, 10)
    _save(tmp_path / "work" / CHECKPOINT, model, [], opt, sched, 5, 0.5, "key")
    state = torch.load(tmp_path / "work" / CHECKPOINT, weights_only=True)
    assert state["step"] == 5 and state["run"] == "key" and state["optimizer"]["state"]
    assert [p.name for p in (tmp_path / "work").iterdir()] == [CHECKPOINT]


# ------------------------------------------------------------------------------------------ calibration


def test_static_quantization_resumes_from_cached_calibration_ranges(tiny_onnx, tmp_path):
    """quantize_static's long part is calibration; its ranges are kept (renamed into place, meta file last)
    outside the stage folder, so a stage killed after calibrating resumes without calibrating again, and a
    half-written cache (no meta file, or a temporary file of a dead process) is never used."""
    import dataclasses

    import numpy as np

    from lambdaslim.compressors.quantize_static import QuantizeStaticConfig, quantize_static
    from lambdaslim.data.splits import Split
    from tests.conftest import stage_context

    rows = make_rows(64, 12)
    cache = tmp_path / "cache"
    ctx = dataclasses.replace(stage_context(), calibration=Split([t for t, _ in rows], np.array([y for _, y in rows])),
                              cache_dir=cache)
    cfg = QuantizeStaticConfig(kind="quantize_static", calibration_samples=32)

    first = quantize_static(cfg, tiny_onnx, tmp_path / "first", ctx)
    assert "calibration_cached" not in first.info and first.info["calibration_batches"] == 2
    ranges = sorted(cache.glob("calibration-*.json"))
    assert len(ranges) == 2 and not list(cache.glob(".*"))  # ranges + meta, no temporary file left
    # The stage was killed after calibrating (its output folder never renamed into place): run it again.
    again = quantize_static(cfg, tiny_onnx, tmp_path / "again", ctx)
    assert again.info["calibration_cached"] is True
    assert (tmp_path / "again" / "model.onnx").read_bytes() == (tmp_path / "first" / "model.onnx").read_bytes()
    # A cache whose meta file was never written (killed between the two renames) is calibrated afresh.
    meta = next(p for p in ranges if p.name.endswith(".meta.json"))
    meta.unlink()
    (cache / f".{meta.name}.{dead_pid()}.tmp").write_text('{"calibration_ba')  # a dead writer's half file
    fresh = quantize_static(cfg, tiny_onnx, tmp_path / "fresh", ctx)
    assert "calibration_cached" not in fresh.info and meta.is_file()
