"""A real `dvc repro` of a tiny pipeline in a temporary git repository."""
import json
import os
import subprocess
import sys
from pathlib import Path


DVC_YAML = """stages:
  compress:
    cmd: lambdaslim run configs/pipelines/tiny.yaml
    deps:
      - configs/pipelines/tiny.yaml
      - data/eval.tsv
    outs:
      - artifacts/tiny/best
    metrics:
      - artifacts/tiny/metrics.json:
          cache: false
    plots:
      - artifacts/tiny/plots.csv:
          cache: false
          x: latency_p95_ms
          y: accuracy
"""


def _sh(cmd: list[str], cwd: Path, env: dict) -> str:
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert res.returncode == 0, f"{' '.join(cmd)} failed:\n{res.stdout}\n{res.stderr}"
    return res.stdout + res.stderr


def dvc_repo(folder: Path, dvc_yaml: str) -> tuple[Path, dict]:
    """A fresh git + DVC repository holding `dvc_yaml`, and the environment to run git, dvc and lambdaslim in."""
    repo = folder / "repo"
    repo.mkdir()
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
                        "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t", "DVC_NO_ANALYTICS": "1"}
    _sh(["git", "init", "-q"], repo, env)
    _sh(["dvc", "init", "-q"], repo, env)
    (repo / "dvc.yaml").write_text(dvc_yaml)
    return repo, env


def test_dvc_repro_runs_the_pipeline_then_does_nothing_on_rerun(make_project, tmp_path, mlflow_uri):
    repo, env = dvc_repo(tmp_path, DVC_YAML)
    make_project("  - kind: export_onnx\n  - kind: quantize_dynamic\n", root=repo)

    first = _sh(["dvc", "repro"], repo, env)
    assert "Running stage 'compress'" in first
    assert json.loads((repo / "artifacts/tiny/metrics.json").read_text())["winner"] == "quantize_dynamic"

    second = _sh(["dvc", "repro"], repo, env)
    assert "Running stage" not in second and "up to date" in second

    shown = _sh(["dvc", "metrics", "show", "--json"], repo, env)
    metrics = json.loads(shown)
    data = next(iter(metrics.values()))["data"]["artifacts/tiny/metrics.json"]["data"]
    # the same few names in every pipeline's file, so `dvc metrics show` stays one narrow table
    assert set(data) == {"winner", "passed", "candidates", "accuracy", "latency_p95_ms", "size_mb"}

    _sh(["git", "add", "-A"], repo, env)
    _sh(["git", "commit", "-qm", "first"], repo, env)
    cfg = repo / "configs/pipelines/tiny.yaml"
    cfg.write_text(cfg.read_text().replace("max_length: 32", "max_length: 24"))
    third = _sh(["dvc", "repro"], repo, env)
    assert "Running stage 'compress'" in third
    diff = _sh(["dvc", "metrics", "diff", "--json"], repo, env)
    assert "artifacts/tiny/metrics.json" in json.loads(diff)

    plots = _sh(["dvc", "plots", "show", "-o", str(tmp_path / "plots")], repo, env)
    assert (tmp_path / "plots" / "index.html").exists(), plots


def test_a_pipeline_without_a_winner_is_a_recorded_result_inside_dvc_repro(make_project, tmp_path, mlflow_uri):
    repo, env = dvc_repo(tmp_path, DVC_YAML.replace("tiny.yaml\n", "tiny.yaml --allow-no-winner\n", 1))
    make_project("  - kind: export_onnx\n", gates_yaml="gates:\n  latency_p95_ms: 0.0001\n", root=repo)

    out = _sh(["dvc", "repro"], repo, env)  # exit 0: one pipeline's verdict never stops the others
    assert "no candidate passed every gate" in out
    metrics = json.loads((repo / "artifacts/tiny/metrics.json").read_text())
    assert metrics["winner"] == "none" and metrics["passed"] == 0 and metrics["candidates"] == 2
    assert [p.name for p in (repo / "artifacts/tiny/best").iterdir()] == ["NO_WINNER.json"]

    from lambdaslim.cli import main  # by hand, the same pipeline still says so with exit 1
    assert main(["run", str(repo / "configs/pipelines/tiny.yaml")]) == 1
