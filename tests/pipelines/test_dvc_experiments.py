"""A real `dvc exp run -S` in a temporary git repository: the pipeline file is the stage's params file, so DVC's
`file:key.path=value` override changes it, and `dvc exp show` lists the run's metrics."""
import json

from lambdaslim.spec.load import load_pipeline
from tests.pipelines.test_dvc import _sh, dvc_repo

PIPELINE = "configs/pipelines/tiny.yaml"
DVC_YAML = f"""stages:
  compress:
    cmd: lambdaslim run {PIPELINE}
    deps:
      - {PIPELINE}
      - data/eval.tsv
    params:
      - {PIPELINE}:
    outs:
      - artifacts/tiny/best
    metrics:
      - artifacts/tiny/metrics.json:
          cache: false
"""


def test_dvc_exp_run_set_param_changes_the_pipeline_file(make_project, tmp_path, mlflow_uri):
    repo, env = dvc_repo(tmp_path, DVC_YAML)
    make_project("  - kind: export_onnx\n  - kind: quantize_dynamic  # per-tensor\n    per_channel: false\n",
                 gates_yaml="# points below the baseline\ngates:\n  accuracy: {max_drop: 1.0}\n", root=repo)
    _sh(["git", "add", "-A"], repo, env)
    _sh(["git", "commit", "-qm", "baseline"], repo, env)

    # The mapping key of a gate and a list index into the stages, in DVC's (Hydra's) override grammar.
    ran = _sh(["dvc", "exp", "run", "-S", f"{PIPELINE}:gates.accuracy.max_drop=0.5",
               "-S", f"{PIPELINE}:stages.1.per_channel=true"], repo, env)
    assert "Running stage 'compress'" in ran

    pipeline = load_pipeline(repo / PIPELINE)  # DVC rewrote the file; it still validates
    assert pipeline.spec.gates.accuracy.max_drop == 0.5 and pipeline.spec.stages[1].per_channel is True
    assert "# points below the baseline" in (repo / PIPELINE).read_text()  # comments outside lists stay
    report = json.loads((repo / "artifacts/tiny/report.json").read_text())
    assert report["candidates"][2]["config"]["per_channel"] is True

    shown = json.loads(_sh(["dvc", "exp", "show", "--json"], repo, env))
    base = next(e for e in shown if e["rev"] != "workspace")
    [exp] = [rev for e in base["experiments"] for rev in e["revs"]]
    params = exp["data"]["params"][PIPELINE]["data"]
    assert params["gates"]["accuracy"]["max_drop"] == 0.5 and params["stages"][1]["per_channel"] is True
    metrics = exp["data"]["metrics"]["artifacts/tiny/metrics.json"]["data"]
    assert metrics["candidates"] == 3 and metrics["winner"] in {"export_onnx", "quantize_dynamic"}
