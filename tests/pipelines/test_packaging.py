"""`lambdaslim package` on a tiny real model: both formats built, unpacked and invoked in fresh interpreters
(real ONNX Runtime, real Powertools, real awslambdaric against a loopback Runtime API)."""
from __future__ import annotations

import base64
import json
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from lambdaslim.compressors import Artifact
from lambdaslim.cli import main
from lambdaslim.packaging import build, deps
from lambdaslim.packaging.deps import PackagingError
from lambdaslim.packaging.invoke import invoke_package, text_events
from lambdaslim.packaging.package import PackageOptions, package
from lambdaslim.records import Candidate
from lambdaslim.store.atomic import write_json_atomic
from lambdaslim.measure.predictors import open_predictor
from lambdaslim.testing.tiny import make_rows, write_tiny_project

STAGES = "  - kind: export_onnx\n"


@pytest.fixture(scope="module")
def project(tiny_model_dir, tiny_onnx, tmp_path_factory) -> Path:
    """A project whose run directory holds a best candidate (the tiny model's ONNX export) and its record."""
    root = tmp_path_factory.mktemp("pkgproj")
    write_tiny_project(root, STAGES, model_dir=tiny_model_dir)
    best = root / "artifacts" / "tiny" / "best"
    shutil.copytree(tiny_onnx.path, best)
    cand = Candidate(stage="export_onnx", kind="export_onnx", index=1, path=str(tiny_onnx.path), format="onnx",
                     size_bytes=1, config_digest="test", config={}, metrics={"accuracy": 100.0})
    write_json_atomic(best / "candidate.json", cand.to_dict())
    return root


@pytest.fixture(scope="module")
def mlflow_env(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path_factory.mktemp('mlf') / 'mlflow.db'}")
        yield


@pytest.fixture(scope="module")
def zipped(project, mlflow_env):
    """The zip format, its wheels resolved from PyPI for the Lambda platform."""
    opts = PackageOptions(format="zip", deps_from="pypi", calls=40, ric_calls=5)
    return package(project / "artifacts/tiny/best", opts, progress=lambda _: None)


@pytest.fixture(scope="module")
def unzipped(zipped, tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("task")
    with zipfile.ZipFile(zipped.out / "function.zip") as zf:
        zf.extractall(dest)
    return dest


@pytest.fixture(scope="module")
def container(project, mlflow_env, tmp_path_factory):
    """The container format through the CLI, dependencies copied from this venv (same Python and arch)."""
    out = tmp_path_factory.mktemp("container") / "pkg"
    code = main(["package", str(project / "artifacts/tiny/best"), "--format", "container", "--deps-from", "venv",
                 "--calls", "20", "--ric-calls", "5", "--no-torch-baseline", "--out", str(out),
                 "--metrics", str(out.parent / "metrics.json"), "--cost-csv", str(out.parent / "cost.csv")])
    return code, out, json.loads((out / "report.json").read_text())


def expected_labels(best: Path, texts: list[str]) -> list[str]:
    """What the project's own ONNX Runtime path predicts for the same model."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(best)
    predict = open_predictor(Artifact(best, "onnx"), 1)
    id2label = json.loads((best / "config.json").read_text())["id2label"]
    return [id2label[str(int(predict(dict(tok(t, return_tensors="np"))).argmax()))] for t in texts]


def test_zip_holds_handler_model_and_runtime_with_a_true_manifest(zipped, unzipped):
    out = zipped.out
    assert {p.name for p in out.iterdir()} >= {"function.zip", "manifest.json", "report.json", "cost.png"}
    manifest = json.loads((out / "manifest.json").read_text())
    rows = {r["path"]: r for r in manifest["files"]}
    assert {"handler.py", "model/model.onnx", "model/tokenizer.json", "model/config.json"} <= set(rows)
    assert (unzipped / "handler.py").read_text() == build.HANDLER_FILE.read_text()  # the maintained module, verbatim
    assert manifest["unzipped_bytes"] == sum(r["size"] for r in rows.values()) <= 250_000_000
    assert manifest["zip_sha256"] == build.sha256_file(out / "function.zip")
    assert rows["model/model.onnx"]["sha256"] == build.sha256_file(unzipped / "model/model.onnx")
    assert not any(p.startswith(("torch/", "transformers/")) or "/tests/" in p for p in rows)
    assert any(p.startswith("onnxruntime/") for p in rows) and any(p.startswith("aws_lambda_powertools/") for p in rows)


def test_zip_is_resolved_for_lambda_and_says_where_it_will_not_import(zipped, unzipped):
    r = zipped.report
    assert r["format"] == "zip" and r["runtime"]["source"] == "pypi"
    wheels = {w.split()[0]: w for w in r["runtime"]["wheels"]}
    assert set(wheels) == {"aws_lambda_powertools", "jmespath", "numpy", "onnxruntime", "tokenizers",
                           "typing_extensions"}
    assert "manylinux" in wheels["onnxruntime"]
    # python3.11 runs on Amazon Linux 2 (glibc 2.26); onnxruntime 1.32 ships manylinux_2_28 wheels only.
    assert not zipped.deployable
    assert "onnxruntime 1.32.0 needs glibc 2.28" in r["problems"][0] and "Amazon Linux 2" in r["problems"][0]


def test_fresh_process_has_only_the_package_and_returns_the_right_labels(project, unzipped):
    texts = [t for t, _ in make_rows(12, 99)]
    inv = invoke_package(unzipped, text_events(texts) + [{"inputs": texts[:5]}], 1769, "3.11")
    assert not inv.loaded["torch"] and not inv.loaded["transformers"] and inv.loaded["onnxruntime"]
    assert inv.sys_path[0] == str(unzipped) and not any("site-packages" in p for p in inv.sys_path)
    want = expected_labels(project / "artifacts/tiny/best", texts)
    assert inv.labels()[:12] == [[w] for w in want]
    assert inv.labels()[12] == want[:5]
    scores = inv.responses[0]["predictions"][0]["scores"]
    assert set(scores) == {"negative", "positive"} and abs(sum(scores.values()) - 1) < 1e-5
    assert '"_aws"' in inv.logs and '"ColdStart"' in inv.logs  # Powertools EMF metrics on stdout
    assert inv.init_ms > 0 and inv.peak_rss_mb < 1769


def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


V1 = {"resource": "/classify", "httpMethod": "POST", "requestContext": {"stage": "prod"}, "isBase64Encoded": False}
V2 = {"version": "2.0", "routeKey": "POST /classify", "requestContext": {"http": {"method": "POST"}}}
BAD_DIRECT = [{}, {"inputs": []}, {"inputs": 3}, {"inputs": [1, 2]}, {"inputs": "  "}, {"inputs": "x" * 2001},
              {"inputs": ["ok"] * 33}, {"inputs": "ok", "extra": 1}, [], 7]
BAD_PROXY = [V1 | {"body": None}, V1 | {"body": "{nope"}, V1 | {"body": '{"inputs": []}'}, V2,
             V2 | {"body": "***", "isBase64Encoded": True}, V2 | {"body": _b64("\xff"), "isBase64Encoded": True}]


def test_bad_events_get_400_and_a_json_error_never_a_trace(unzipped):
    good = [V1 | {"body": json.dumps({"inputs": "a great film"})},
            V2 | {"body": _b64(json.dumps({"inputs": ["dull plot", "lovely cast"]})), "isBase64Encoded": True}]
    inv = invoke_package(unzipped, BAD_DIRECT + BAD_PROXY + good, 1769, "3.11")
    n_direct, n_proxy = len(BAD_DIRECT), len(BAD_PROXY)
    for r in inv.responses[:n_direct]:
        assert r["statusCode"] == 400 and r["error"]["type"] == "BadRequest" and r["error"]["message"]
    for r in inv.responses[n_direct:n_direct + n_proxy]:
        assert r["statusCode"] == 400 and r["headers"]["Content-Type"] == "application/json"
        assert json.loads(r["body"])["error"]["message"]
    ok = [json.loads(r["body"]) for r in inv.responses[-2:]]
    assert [p["label"] for p in ok[0]["predictions"]] == ["positive"]
    assert [p["label"] for p in ok[1]["predictions"]] == ["negative", "positive"]
    assert "Traceback" not in inv.logs and "BadRequests" in inv.logs


def test_report_measures_package_beside_torch_and_through_awslambdaric(zipped):
    inv = zipped.report["invocation"]
    pkg, torch_ = inv["package"], inv["torch_baseline"]
    assert pkg["accuracy_on_calls"] == 100.0 and pkg["bad_events_answered_400"] and pkg["powertools_metrics_emitted"]
    assert pkg["calls"] == 40 and pkg["two_threads"]["calls"] == 40
    assert torch_["init_ms"] > pkg["init_ms"] and inv["label_agreement_with_torch"] == 1.0
    ric = inv["awslambdaric"]
    assert ric["ok"] == ric["calls"] == 5 and ric["errors"] == 0 and ric["process_init_ms"] > 0


def test_cost_table_recommendation_metrics_and_plot(zipped, project):
    r, run_dir = zipped.report, project / "artifacts/tiny"
    rec = r["cost"]["recommended"]
    assert rec["arch"] == "x86_64" and 512 <= rec["memory_mb"] <= 3008
    assert len(r["cost"]["rows"]) == 18 and (run_dir / "package-cost.csv").read_text().startswith("memory_mb,")
    assert (zipped.out / "cost.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    m = json.loads((run_dir / "package-metrics.json").read_text())
    assert m["format"] == "zip" and m["package_zipped_bytes"] < m["package_unzipped_bytes"]
    assert m["init_ms"] > 0 and m["warm_p50_ms"] > 0 and m["peak_rss_mb"] > 0
    assert m["recommended_memory_mb"] == rec["memory_mb"] and m["cost_per_1m_invocations_usd"] > 0


def test_mlflow_run_logged(zipped):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("tiny").experiment_id
    runs = client.search_runs([experiment], "tags.`lambdaslim.step` = 'package'")
    assert runs and runs[0].data.metrics["init_ms"] > 0 and runs[0].data.params["format"] in ("zip", "container")
    names = {a.path for a in client.list_artifacts(runs[0].info.run_id)}
    assert {"report.json", "manifest.json", "cost.png"} <= names


def test_container_context_is_a_layered_docker_build_verified_as_a_tree(container):
    code, out, r = container
    assert code == 0 and r["format"] == "container" and r["deployable"]
    ctx = out / "context"
    assert {p.name for p in ctx.iterdir()} == {"Dockerfile", "requirements.txt", ".dockerignore", "handler.py",
                                               "slim.py", "model"}
    dockerfile = (ctx / "Dockerfile").read_text()
    # onnxruntime's glibc 2.28 needs Amazon Linux 2023: the OS-only base, Python 3.11 from dnf, awslambdaric.
    assert r["layout"]["base_image"] == "public.ecr.aws/lambda/provided:al2023" and r["layout"]["with_ric"]
    assert dockerfile.count("FROM public.ecr.aws/lambda/provided:al2023") == 2
    order = [dockerfile.index(s) for s in ("COPY --from=deps", "COPY model/", "COPY handler.py")]
    assert order == sorted(order)  # largest and least-changing layers first
    assert 'ENTRYPOINT ["/usr/bin/python3.11", "-m", "awslambdaric"]' in dockerfile
    pins = (ctx / "requirements.txt").read_text()
    assert "onnxruntime==1.32.0" in pins and "awslambdaric==" in pins and "torch" not in pins
    assert (ctx / "model" / "model.onnx").is_file()  # baked in, never downloaded
    assert (ctx / "handler.py").read_text() == build.HANDLER_FILE.read_text()
    pkg = r["invocation"]["package"]
    assert pkg["accuracy_on_calls"] == 100.0 and not pkg["loaded"]["torch"]
    assert r["invocation"]["awslambdaric"]["ok"] == 5
    manifest = json.loads((out / "manifest.json").read_text())
    assert any(f["path"].startswith("awslambdaric/") for f in manifest["files"])


def test_over_limit_zip_fails_with_one_line_naming_the_limit(project, tmp_path, capsys):
    big = tmp_path / "big" / "best"
    shutil.copytree(project / "artifacts/tiny/best", big)
    with open(big / "model.onnx_data", "wb") as f:  # sparse: 251 MB of external weights without writing them
        f.truncate(251_000_000)
    code = main(["package", str(big), "--format", "zip", "--deps-from", "venv",
                 "--pipeline", str(project / "configs/pipelines/tiny.yaml")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "exceeds Lambda's 250 MB limit for zip packages" in err and "--format container" in err


def test_missing_model_files_are_bad_input(tmp_path):
    (tmp_path / "best").mkdir()
    (tmp_path / "best" / "model.onnx").write_bytes(b"")
    with pytest.raises(PackagingError, match="missing tokenizer.json, config.json"):
        package(tmp_path / "best")


@pytest.mark.parametrize("requested, zipped_mb, unzipped_mb, direct, problems, fmt, words", [
    ("auto", 40, 120, False, [], "zip", "fit a zip"),
    ("auto", 40, 120, True, [], "zip", "direct upload"),
    ("auto", 60, 120, True, [], "container", "50 MB"),
    ("auto", 90, 260, False, [], "container", "250 MB"),
    ("auto", 40, 120, False, ["onnxruntime needs glibc 2.28"], "container", "glibc 2.28"),
    ("zip", 90, 260, False, [], "zip", "asked for"),
    ("container", 1, 2, False, [], "container", "asked for"),
])
def test_decision_matrix(requested, zipped_mb, unzipped_mb, direct, problems, fmt, words):
    got, reason = build.decide(requested, zipped_mb * 1_000_000, unzipped_mb * 1_000_000, direct, problems)
    assert got == fmt and words in reason


@pytest.mark.parametrize("tag, arch, glibc", [
    ("cp311-cp311-manylinux_2_28_x86_64", "x86_64", (2, 28)),
    ("cp39-abi3-manylinux2014_aarch64", "arm64", (2, 17)),
    ("cp39-abi3-manylinux2014_x86_64", "arm64", False),
    ("py3-none-any", "x86_64", None),
    ("cp311-cp311-linux_x86_64", "x86_64", False),
    ("cp311-cp311-manylinux1_x86_64", "x86_64", (2, 5)),
])
def test_glibc_of_wheel_tags(tag, arch, glibc):
    assert deps.glibc_of_tag(tag, arch) == glibc


def test_platform_tags_prefer_what_the_runtime_can_load():
    tags = deps.platform_tags("x86_64", (2, 26))
    assert tags[0] == "manylinux_2_26_x86_64"
    assert tags.index("manylinux2014_x86_64") < tags.index("manylinux_2_27_x86_64")
    assert deps.platform_tags("arm64", (2, 34))[0] == "manylinux_2_34_aarch64"


def test_container_layout_follows_the_wheels_glibc():
    assert build.container_layout("3.11", "x86_64", (2, 17)).base_image == "public.ecr.aws/lambda/python:3.11"
    assert build.container_layout("3.12", "arm64", (2, 28)).base_image == "public.ecr.aws/lambda/python:3.12"
    al2023 = build.container_layout("3.11", "x86_64", (2, 28))
    assert al2023.with_ric and al2023.dockerfile == "Dockerfile.al2023"
    with pytest.raises(PackagingError, match="newer than any Lambda base image"):
        build.container_layout("3.11", "x86_64", (2, 38))


def test_slim_rules_keep_what_imports_need():
    from lambdaslim.packaging.slim import is_pruned

    for kept in ("onnxruntime/capi/onnxruntime_pybind11_state.cpython-311-x86_64-linux-gnu.so",
                 "numpy/_core/_multiarray_umath.cpython-311-x86_64-linux-gnu.so", "numpy.libs/libscipy_openblas64_.so",
                 "tokenizers/tokenizers.abi3.so", "numpy/linalg/__init__.py"):
        assert not is_pruned(kept), kept
    for dropped in ("onnxruntime/capi/libonnxruntime.so.1.32.0", "numpy/_core/tests/test_api.py", "bin/f2py",
                    "numpy/__init__.pyi", "onnxruntime/transformers/optimizer.py", "x/__pycache__/y.pyc"):
        assert is_pruned(dropped), dropped


def test_handler_scores_are_softmax_of_the_model_logits(unzipped, project):
    """Batch padding must not change an answer: a text scores the same alone and in a mixed batch."""
    texts = ["a great film with a charming and very long story of some scenes", "dull"]
    inv = invoke_package(unzipped, [{"inputs": texts}, {"inputs": texts[1]}], 1769, "3.11")
    batch, alone = inv.responses[0]["predictions"][1]["scores"], inv.responses[1]["predictions"][0]["scores"]
    assert np.allclose(list(batch.values()), list(alone.values()), atol=1e-5)


def test_the_gated_accuracy_is_what_the_packaged_handler_serves(unzipped, tiny_onnx, tmp_path):
    """Dynamic int8 computes activation scales per call: the accuracy that gates a candidate is computed
    one request at a time, exactly as the handler answers them."""
    from lambdaslim.compressors.quantize_dynamic import QuantizeDynamicConfig, quantize_dynamic
    from lambdaslim.data.splits import Split
    from lambdaslim.measure.benchmarks import measure_accuracy, predict_logits
    from tests.conftest import stage_context

    int8 = quantize_dynamic(QuantizeDynamicConfig(kind="quantize_dynamic"), tiny_onnx, tmp_path / "int8",
                            stage_context()).artifact
    task = tmp_path / "task"
    shutil.copytree(unzipped, task)
    shutil.copy2(int8.onnx_file, task / "model" / "model.onnx")
    rows = make_rows(60, 123)
    texts, labels = [t for t, _ in rows], np.array([y for _, y in rows])
    served = [p[0] for p in invoke_package(task, text_events(texts), 1769, "3.11").labels()]
    id2label = json.loads((int8.path / "config.json").read_text())["id2label"]
    gated = [id2label[str(i)] for i in predict_logits(int8, texts, 32, 1, 1).argmax(-1)]
    assert served == gated
    acc = measure_accuracy(int8, Split(texts, labels), 32, 1, 1)["accuracy"]
    assert acc == round(100 * float(np.mean([s == id2label[str(y)] for s, y in zip(served, labels)])), 4)
