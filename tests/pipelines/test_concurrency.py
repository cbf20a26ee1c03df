"""Two `lambdaslim run` processes started at the same moment against one sqlite MLflow store (created by
neither beforehand) and one artifact directory: both finish, every run is recorded, no output is torn.

Design under test: different pipelines run side by side and share the stage store (entries are renamed
into place whole; the first to finish a stage wins, the other discards its identical copy). Two runs of
the same pipeline take turns on a per-pipeline lock (artifacts/<pipeline>/.lock): the second waits and
then reuses every stage the first finished, so report.json, candidates/ and best/ always come from one run.
"""
from __future__ import annotations

import json

from lambdaslim.records import Candidate
from lambdaslim.testing.cli_runs import run_together, tiny_project
from lambdaslim.testing.mlflow_runs import mlflow_runs, parents_and_children
from lambdaslim.testing.run_outputs import stage_store_problems

ALPHA = "  - kind: export_onnx\n  - kind: quantize_dynamic\n"
BETA = "  - kind: export_onnx\n  - kind: optimize_onnx\n"


def _check_outputs(run_dir):
    report = json.loads((run_dir / "report.json").read_text())
    json.loads((run_dir / "metrics.json").read_text())
    assert (run_dir / "plots.csv").read_text().count("\n") == len(report["candidates"]) + 1
    for f in (run_dir / "candidates").iterdir():
        Candidate.from_dict(json.loads(f.read_text()))
    best = json.loads((run_dir / "best" / "candidate.json").read_text())
    assert best["stage"] == report["best"]
    assert not [p.name for p in run_dir.rglob(".*") if p.name != ".lock"]
    return report


def test_two_pipelines_at_once_share_store_and_artifacts(tiny_model_dir, tmp_path):
    root = tmp_path / "project"
    alpha = tiny_project(root, tiny_model_dir, name="alpha", stages=ALPHA)
    beta = tiny_project(root, tiny_model_dir, name="beta", stages=BETA)
    assert not (root / "mlflow.db").exists()

    procs = run_together([alpha, beta], root)

    for p in procs:
        assert p.rc == 0, p.stderr[-3000:]
    uri = f"sqlite:///{root / 'mlflow.db'}"
    for name, stages in (("alpha", ALPHA), ("beta", BETA)):
        parents, children = parents_and_children(mlflow_runs(uri, name))
        assert [p.info.status for p in parents] == ["FINISHED"]
        assert sorted(c.info.run_name for c in children) == sorted(
            ["baseline"] + [line.split(": ")[1] for line in stages.splitlines()])
        assert all(c.info.status == "FINISHED" for c in children)
        report = _check_outputs(root / "artifacts" / name)
        assert report["mlflow_run_id"] == parents[0].info.run_id
    store = root / "artifacts" / "stages"
    assert stage_store_problems(store) == []
    assert sorted(d.name.split("-")[0] for d in store.iterdir() if not d.name.startswith("baseline")) == [
        "export_onnx", "optimize_onnx", "quantize_dynamic"]  # the shared export exists once


def test_the_same_pipeline_twice_at_once_takes_turns(tiny_model_dir, tmp_path):
    root = tmp_path / "project"
    file = tiny_project(root, tiny_model_dir, name="same", stages=ALPHA)

    procs = run_together([file, file], root)

    for p in procs:
        assert p.rc == 0, p.stderr[-3000:]
    parents, children = parents_and_children(mlflow_runs(f"sqlite:///{root / 'mlflow.db'}", "same"))
    assert sorted(p.info.status for p in parents) == ["FINISHED", "FINISHED"]
    # The run that got the lock second (its MLflow run starts once it holds the lock) reused both stages;
    # it says it waited (unless the first had already finished when it got there).
    later = max(parents, key=lambda r: r.info.start_time)
    second = next(p for p in procs if str(p.pid) == later.data.tags["lambdaslim.pid"])
    assert sum(line.endswith(", cached)") for line in second.lines) == 2
    waited = [p for p in procs if any(line.startswith("waiting for the run of same by pid") for line in p.lines)]
    assert waited in ([], [second])
    assert len(children) == 6 and all(c.info.status == "FINISHED" for c in children)
    assert {p.data.tags["lambdaslim.pid"] for p in parents} == {str(p.pid) for p in procs}
    assert not any("lambdaslim.resumes" in p.data.tags for p in parents)  # a live run is never taken for dead
    report = _check_outputs(root / "artifacts" / "same")
    last = max(parents, key=lambda r: r.info.end_time)
    assert report["mlflow_run_id"] == last.info.run_id
    assert stage_store_problems(root / "artifacts" / "stages") == []
