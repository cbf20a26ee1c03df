"""The `select` DVC stage: a real `dvc repro` of two tiny pipelines and the selection across them, in a
temporary git repository; and the project's own dvc.yaml keeps select and package in step with compress."""
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]

DVC_YAML = """stages:
  compress:
    foreach: [dyn, static]
    do:
      cmd: lambdaslim run configs/pipelines/${item}.yaml
      deps:
        - configs/pipelines/${item}.yaml
        - data/eval.tsv
      outs:
        - artifacts/${item}/best
        - artifacts/${item}/report.json: {cache: false}
      plots:
        - artifacts/${item}/pareto.csv:
            cache: false
            x: latency_p95_ms
            y: accuracy
  select:
    cmd: lambdaslim select artifacts/dyn artifacts/static --out artifacts/selected
    deps: [artifacts/dyn/report.json, artifacts/dyn/best, artifacts/static/report.json, artifacts/static/best]
    outs:
      - artifacts/selected/best
      - artifacts/selected/selection.json: {cache: false}
    metrics:
      - artifacts/selected/metrics.json: {cache: false}
    plots:
      - artifacts/selected/pareto.csv: {cache: false, x: latency_p95_ms, y: accuracy, template: scatter}
      - artifacts/selected/pareto.png: {cache: false}
"""


def _sh(cmd: list[str], cwd: Path, env: dict) -> str:
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert res.returncode == 0, f"{' '.join(cmd)} failed:\n{res.stdout}\n{res.stderr}"
    return res.stdout + res.stderr


def test_dvc_repro_selects_across_pipelines_then_does_nothing_on_rerun(make_project, tmp_path, mlflow_uri):
    repo = tmp_path / "repo"
    repo.mkdir()
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    _sh(["git", "init", "-q"], repo, env)
    _sh(["dvc", "init", "-q"], repo, env)
    (repo / "dvc.yaml").write_text(DVC_YAML)
    make_project("  - kind: export_onnx\n  - kind: quantize_dynamic\n", name="dyn", root=repo)
    make_project("  - kind: export_onnx\n  - kind: quantize_static\n    calibration_samples: 32\n", name="static",
                 root=repo)

    first = _sh(["dvc", "repro"], repo, env)
    assert "Running stage 'select'" in first
    sel = json.loads((repo / "artifacts/selected/selection.json").read_text())
    best = json.loads((repo / "artifacts/selected/best/candidate.json").read_text())
    assert best["config_digest"] == sel["winner"]["config_digest"] and sel["winner"]["pipeline"] in ("dyn", "static")

    second = _sh(["dvc", "repro"], repo, env)
    assert "Running stage" not in second

    metrics = json.loads(_sh(["dvc", "metrics", "show", "--json"], repo, env))
    data = next(iter(metrics.values()))["data"]["artifacts/selected/metrics.json"]["data"]
    assert data["winner"] == sel["winner"]["label"] and data["runs_without_winner"] == 0
    out = tmp_path / "plots"
    shown = _sh(["dvc", "plots", "show", "-o", str(out)], repo, env)
    assert (out / "index.html").exists(), shown
    assert "artifacts/selected/pareto.csv" in (out / "index.html").read_text()


def test_project_select_and_package_stages_follow_compress():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    items = stages["compress"]["foreach"]
    select = stages["select"]
    runs = select["cmd"].split("lambdaslim select ", 1)[1].split(" --out ")[0].split()
    assert runs == [f"artifacts/{x}" for x in items], "select must name every compress item, in order"
    assert {f"artifacts/{x}/report.json" for x in items} <= set(select["deps"])
    assert select["cmd"].endswith("--out artifacts/selected") and "artifacts/selected/best" in select["outs"]
    package = stages["package"]
    assert package["cmd"].startswith("lambdaslim package artifacts/selected/best ") and "--pipeline" not in package["cmd"]
    assert {"artifacts/selected/best", "artifacts/selected/selection.json"} <= set(package["deps"])
