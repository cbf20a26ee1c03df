"""`lambdaslim package`: build the best candidate's Lambda package, invoke it as Lambda would, price it.

Writes OUT (default artifacts/<pipeline>/package/): function.zip or context/ (a Docker build context),
manifest.json (files, sizes, sha256), report.json (format and why, runtime audit, invocations, cost)
and cost.png; beside it package-metrics.json (what `dvc metrics` reads) and package-cost.csv.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
import zipfile
from importlib import metadata
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from pipelines import lambda_limits as L
from pipelines.data import load_split
from pipelines.packaging import build, cost, deps
from pipelines.packaging.deps import PackagingError
from pipelines.packaging.invoke import Invocation, invoke_package, invoke_torch_baseline, text_events
from pipelines.records import write_json_atomic
from pipelines.runtime import resolve_model_path
from pipelines.spec import Pipeline, load_pipeline, project_root

RIC_DISTRIBUTIONS = ("awslambdaric", "simplejson", "snapshot-restore-py")
MEASURED_MEMORY_MB = {1: L.MB_PER_VCPU, 2: 2 * L.MB_PER_VCPU}  # settings whose handler runs 1 and 2 threads
BAD_EVENTS = [  # each must be answered with 400 and a JSON error
    {"inputs": []},
    {"inputs": 42},
    {"text": "wrong field"},
    {"requestContext": {"http": {"method": "POST"}}, "body": "{not json", "isBase64Encoded": False},
]


class PackageOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["zip", "container", "auto"] = "auto"
    arch: Literal["x86_64", "arm64"] | None = Field(None, description="default: the pipeline target's")
    direct_upload: bool | None = Field(None, description="default: the pipeline target's")
    deps_from: Literal["pypi", "venv"] = "pypi"
    calls: int = Field(200, ge=20, le=100_000, description="warm invocations per measurement")
    ric_calls: int = Field(50, ge=0, le=10_000, description="invocations through awslambdaric (0: skip)")
    torch_baseline: bool = Field(True, description="measure the torch+transformers handler beside the package")
    pipeline: Path | None = Field(None, description="default: configs/pipelines/<run dir name>.yaml")
    out: Path | None = None
    metrics: Path | None = None
    cost_csv: Path | None = None
    registry_model: str | None = Field(None, description="attach the package to this registered model's version")


@dataclass
class PackageResult:
    out: Path
    report: dict

    @property
    def deployable(self) -> bool:
        return self.report["deployable"]


def package(best_dir: str | Path, opts: PackageOptions = PackageOptions(), progress=print) -> PackageResult:
    best_dir = Path(best_dir).resolve()
    config = build.check_model_dir(best_dir)
    p = _pipeline(best_dir, opts)
    target = p.target
    arch = opts.arch or target.architecture
    direct_upload = target.direct_upload if opts.direct_upload is None else opts.direct_upload
    run_dir = best_dir.parent
    out = (opts.out or run_dir / "package").resolve()
    metrics_file = (opts.metrics or run_dir / "package-metrics.json").resolve()
    cost_csv = (opts.cost_csv or run_dir / "package-cost.csv").resolve()
    candidate = json.loads((best_dir / "candidate.json").read_text()) if (best_dir / "candidate.json").is_file() else {}
    env = {"LAMBDASLIM_MAX_TOKENS": str(p.spec.data.max_length), "LAMBDASLIM_MAX_BATCH": "32",
           "LAMBDASLIM_MAX_TEXT_CHARS": "2000", "POWERTOOLS_SERVICE_NAME": p.name}
    name = f"{p.name}/{candidate.get('stage', best_dir.name)}"
    progress(f"package {name}: --format {opts.format}, python{target.python} {arch}, deps from {opts.deps_from}")

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".package-", dir=out.parent) as tmp:
        work = Path(tmp)
        staged = work / "out"
        staged.mkdir()
        built = _build(best_dir, work, staged, opts.format, target.python, arch, direct_upload, opts.deps_from,
                       env, name, progress)
        ev = p.spec.data.eval
        split = load_split(ev.path if ev.path.startswith("hf:") else p.resolve(ev.path), ev.text_column,
                           ev.label_column, p.spec.model.label_names, limit=ev.limit)
        gate = p.spec.gates.latency_p95_ms
        measured = _measure(built, split, p.spec.model.label_names, opts, target.python, arch, env,
                            baseline_model_dir(p), work, progress)
        report = _report(built, candidate, config, opts, env, measured, gate)
        if measured.get("call_ms_by_threads"):
            rows = cost.cost_table(measured.pop("call_ms_by_threads"), measured["package"]["peak_rss_mb"], gate)
            best = cost.recommend(rows, arch)
            cost.write_csv(rows, cost_csv)
            cost.plot(rows, gate, best, staged / "cost.png", f"{name}: {built['format']} on Lambda, {arch}")
            report["cost"] = {"latency_gate_ms": gate, "table": str(cost_csv), "plot": "cost.png",
                              "recommended": asdict(best) if best else None,
                              "note": "durations measured on this host (x86_64) at 1 and 2 threads, scaled to each "
                                      "setting's vCPU share; arm64 priced on the same durations (not measured)",
                              "rows": [asdict(r) for r in rows]}
        write_json_atomic(staged / "report.json", report)
        _swap_into_place(staged, out)
    report["out"] = str(out)
    write_json_atomic(metrics_file, package_metrics(report))
    _log_mlflow(p, run_dir, out, report, metrics_file, cost_csv)
    if opts.registry_model:
        _attach_to_registry(p, opts.registry_model, candidate.get("config_digest", ""), out, metrics_file, report,
                            progress)
    return PackageResult(out, report)


def _pipeline(best_dir: Path, opts: PackageOptions) -> Pipeline:
    root = project_root(best_dir / "candidate.json")
    file = opts.pipeline or _selected_pipeline(best_dir.parent, root) or \
        root / "configs" / "pipelines" / f"{best_dir.parent.name}.yaml"
    if not Path(file).is_file():
        raise PackagingError(f"{best_dir}: no pipeline file {file} to read the target and evaluation data from; "
                             f"pass --pipeline FILE")
    return load_pipeline(file)


def _selected_pipeline(run_dir: Path, root: Path) -> Path | None:
    """`lambdaslim select` names the pipeline file that produced its winner in selection.json."""
    sel = run_dir / "selection.json"
    if not sel.is_file():
        return None
    file = (json.loads(sel.read_text()).get("winner") or {}).get("pipeline_file")
    return root / file if file else None


def _attach_to_registry(p: Pipeline, name: str, digest: str, out: Path, metrics_file: Path, report: dict,
                        progress) -> None:
    from mlflow.tracking import MlflowClient

    from pipelines.registry import attach_package
    from pipelines.tracking import default_tracking_uri

    client = MlflowClient(tracking_uri=default_tracking_uri(p.root))
    done = attach_package(client, name, digest, out, metrics_file, package_metrics(report))
    progress(f"  registry: attached to {name} version {done['version']} (run {done['run_id']})" if done else
             f"  registry: no version of {name} holds candidate {digest or '?'}; nothing attached")


def baseline_model_dir(p: Pipeline) -> Path | None:
    """The fp32 PyTorch model the pipeline started from (for the torch+transformers handler)."""
    ref = p.spec.model.path
    if ref.startswith("hf:"):
        return None
    resolved = resolve_model_path(ref)
    d = Path(resolved) if resolved != ref else p.resolve(ref)
    return d if (d / "config.json").is_file() else None


def _build(best_dir, work, staged, requested, python, arch, direct_upload, source, env, name, progress) -> dict:
    """Resolve the runtime for the managed runtime's OS, pick the format, write it into `staged`."""
    pins = deps.runtime_pins()
    zl = build.zip_layout(python, arch)
    site = work / "site-managed"
    t0 = time.perf_counter()
    deps.install_runtime(pins, site, source, python, arch, zl.glibc)
    needs = deps.audit_glibc(site, arch)
    zip_problems = deps.glibc_problems(needs, zl.glibc, zl.where)
    progress(f"  runtime: {len(pins)} distributions from {source} ({time.perf_counter() - t0:.1f}s); "
             f"{zip_problems[0] if zip_problems else 'all import on ' + zl.where}")
    zipped = unzipped = None
    if requested == "zip" or (requested == "auto" and not zip_problems):
        tree = work / "zip-tree"
        bytecode = build.assemble_tree(site, best_dir, tree, python)
        unzipped = build.tree_bytes(tree)
        errs = build.zip_limit_errors(0, unzipped, False)
        if errs and requested == "zip":  # fail before spending time on compression
            raise PackagingError(f"{name}: zip {errs[0]}")
        if not errs:
            build.write_zip(tree, work / "function.zip")
            zipped, unzipped = build.zip_sizes(work / "function.zip")
            progress(f"  zip: {zipped / 1e6:,.1f} MB zipped, {unzipped / 1e6:,.1f} MB unzipped")
    fmt, reason = build.decide(requested, zipped, unzipped, direct_upload, zip_problems)
    progress(f"  format: {fmt} — {reason}")
    head = {"format": fmt, "requested_format": requested, "reason": reason, "source": source}
    if fmt == "zip":
        errs = build.zip_limit_errors(zipped, unzipped, direct_upload)
        if errs:
            raise PackagingError(f"{name}: zip {errs[0]}")
        return head | _finish_zip(work, staged, zl, pins, needs, zip_problems, bytecode)
    needed = max((n.glibc for n in needs if n.glibc), default=None)
    return head | _finish_container(best_dir, work, staged, site, zl, pins, needed, source, env, name, reason, zipped)


def _finish_zip(work, staged, layout, pins, needs, problems, bytecode) -> dict:
    """function.zip and its manifest; the zip unpacked as Lambda unpacks it, to be invoked: what ships."""
    zip_path = staged / "function.zip"
    shutil.copy2(work / "function.zip", zip_path)
    zipped, unzipped = build.zip_sizes(zip_path)
    task_root = work / "unzipped"
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(task_root)
    files = build.file_entries(task_root)
    write_json_atomic(staged / "manifest.json", {
        "format": "zip", "zip": "function.zip", "zip_bytes": zipped, "unzipped_bytes": unzipped,
        "zip_sha256": build.sha256_file(zip_path), "files": files})
    return {"layout": _layout_dict(layout), "problems": problems, "task_root": task_root, "bytecode": bytecode,
            "pins": [str(q) for q in pins], "wheels": [n.describe() for n in needs],
            "package": {"path": "function.zip", "zip_bytes": zipped, "unzipped_bytes": unzipped, "files": len(files)}}


def _finish_container(best_dir, work, staged, site, zl, pins, needed, source, env, name, reason, zipped) -> dict:
    """The build context, and the file tree its image holds in /var/task, assembled here to be invoked."""
    cl = build.container_layout(zl.python, zl.arch, needed)
    if cl.with_ric:  # an OS-only base image has no runtime: awslambdaric goes into the image
        pins = sorted(set(pins) | set(deps.runtime_pins(extra=RIC_DISTRIBUTIONS)), key=lambda q: q.name.lower())
    if cl.glibc != zl.glibc or cl.with_ric:
        site = work / "site-container"
        deps.install_runtime(pins, site, source, cl.python, cl.arch, cl.glibc)
    needs = deps.audit_glibc(site, cl.arch)
    problems = deps.glibc_problems(needs, cl.glibc, cl.where)
    if problems:
        raise PackagingError(f"{name}: container {problems[0]}")
    tree = work / "image-tree"
    bytecode = build.assemble_tree(site, best_dir, tree, cl.python)
    image = build.image_bytes_estimate(tree)
    if image > L.CONTAINER_IMAGE_MB * build.MB:
        raise PackagingError(f"{name}: container image about {image / 1e6:,.0f} MB exceeds Lambda's "
                             f"{L.CONTAINER_IMAGE_MB:,} MB limit for container images")
    context_files = build.write_container_context(tree, pins, cl, staged / "context", env, name, reason)
    files = build.file_entries(tree)
    unzipped = sum(f["size"] for f in files)
    write_json_atomic(staged / "manifest.json", {
        "format": "container", "context": "context", "context_files": context_files, "base_image": cl.base_image,
        "task_root_bytes": unzipped, "files": files})
    return {"layout": _layout_dict(cl), "problems": problems, "task_root": tree, "bytecode": bytecode,
            "pins": [str(q) for q in pins], "wheels": [n.describe() for n in needs],
            "package": {"path": "context", "unzipped_bytes": unzipped, "image_bytes_estimate": image,
                        "files": len(files), "context_files": context_files,
                        "zip_bytes": zipped}}  # what a zip of the same runtime would weigh, when one was built


def _layout_dict(layout: build.Layout) -> dict:
    d = asdict(layout)
    d["glibc"] = deps.fmt_glibc(layout.glibc)
    return d


def _measure(built: dict, split, label_names: list[str], opts: PackageOptions, python: str, arch: str, env: dict,
             baseline: Path | None, work: Path, progress) -> dict:
    """Fresh-process invocations: the package at 1 and 2 threads, the torch baseline, awslambdaric."""
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    if python != here or deps.WHEEL_ARCH[arch] != os.uname().machine:
        why = f"the package is for python{python} {arch}; this host runs python{here} {os.uname().machine}"
        progress(f"  invocation skipped: {why}")
        return {"skipped": why}
    root = built["task_root"]
    texts = [split.texts[i % len(split)] for i in range(opts.calls)]
    truth = [label_names[int(split.labels[i % len(split)])] for i in range(opts.calls)]
    events = text_events(texts)
    runs: dict[int, Invocation] = {}
    for threads, memory in MEASURED_MEMORY_MB.items():
        if threads > (os.cpu_count() or 1):
            continue
        runs[threads] = invoke_package(root, events + (BAD_EVENTS if threads == 1 else []), memory, python, env)
    one = runs[1]
    bad = one.responses[len(events):]
    one.responses, one.call_ms = one.responses[: len(events)], one.call_ms[: len(events)]
    pkg = _summary(one, truth)
    pkg |= {"bad_events_answered_400": all(_is_json_400(r) for r in bad),
            "sys_path": one.sys_path, "loaded": one.loaded,
            "powertools_metrics_emitted": '"_aws"' in one.logs and '"CloudWatchMetrics"' in one.logs}
    if 2 in runs:
        pkg["two_threads"] = runs[2].latency()
    progress(f"  package: init {pkg['init_ms']:.0f} ms, warm p50 {pkg['p50_ms']:.2f} ms, "
             f"peak RSS {pkg['peak_rss_mb']:.0f} MB, torch loaded: {one.loaded['torch']}")
    result = {"package": pkg, "call_ms_by_threads": {t: r.call_ms[: len(events)] for t, r in runs.items()}}
    if not opts.torch_baseline:
        result["torch_baseline"] = {"skipped": "not asked for"}
    elif baseline is not None:
        tb = invoke_torch_baseline(baseline, events, MEASURED_MEMORY_MB[1], python)
        result["torch_baseline"] = _summary(tb, truth) | {"model_dir": str(baseline)}
        result["init_speedup"] = result["torch_baseline"]["init_ms"] / pkg["init_ms"]
        agree = [a == b for a, b in zip(one.labels(), tb.labels())]
        result["label_agreement_with_torch"] = float(np.mean(agree))
        progress(f"  torch+transformers: init {tb.init_ms:.0f} ms, "
                 f"warm p50 {result['torch_baseline']['p50_ms']:.2f} ms "
                 f"-> init {result['init_speedup']:.1f}x faster packaged")
    else:
        result["torch_baseline"] = {"skipped": "the pipeline's model is not a local PyTorch directory"}
    result["awslambdaric"] = _drive_ric(root, events[: opts.ric_calls], python, env, work, built["layout"]["with_ric"])
    return result


def _is_json_400(response: dict) -> bool:
    body = json.loads(response["body"]) if "body" in response else response
    return response.get("statusCode") == 400 and isinstance(body.get("error", {}).get("message"), str)


def _summary(inv: Invocation, truth: list[str]) -> dict:
    """Init, warm latency, peak memory, and how many answers match the evaluation labels."""
    correct = [p is not None and p == [t] for p, t in zip(inv.labels(), truth)]
    return {"init_ms": inv.init_ms, **inv.latency(), "peak_rss_mb": inv.peak_rss_mb,
            "accuracy_on_calls": 100 * float(np.mean(correct))}


def _drive_ric(root: Path, events: list, python: str, env: dict, work: Path, ric_inside: bool) -> dict:
    from pipelines.packaging.runtime_api import drive, lambda_env

    if not events:
        return {"skipped": "--ric-calls 0"}
    runtime = root if ric_inside else work / "emulated-runtime"  # the managed runtime brings awslambdaric
    if not ric_inside:
        try:
            deps.install_from_venv(list(RIC_DISTRIBUTIONS), runtime)
        except metadata.PackageNotFoundError as e:
            return {"skipped": f"awslambdaric is not installed here ({e})"}
    run = drive(root, runtime, events, lambda_env(MEASURED_MEMORY_MB[1], python, env), log_file=work / "ric.log")
    ms = np.asarray(run.durations_ms)
    return {"process_init_ms": run.init_ms, "p50_ms": float(np.percentile(ms, 50)),
            "p95_ms": float(np.percentile(ms, 95)), "calls": len(ms), "errors": len(run.errors),
            "ok": sum(r.get("statusCode") == 200 for r in run.responses), "peak_rss_mb": run.peak_rss_mb}


def _report(built: dict, candidate: dict, config: dict, opts: PackageOptions, env: dict, measured: dict,
            gate: float | None) -> dict:
    layout = built["layout"]
    return {
        "candidate": {k: candidate.get(k) for k in ("stage", "kind", "format", "size_bytes", "config_digest")}
                     | {"metrics": {k: candidate.get("metrics", {}).get(k) for k in ("accuracy", "latency_p95_ms")}},
        "labels": [config["id2label"][str(i)] for i in range(len(config["id2label"]))],
        "format": built["format"], "requested_format": built["requested_format"], "reason": built["reason"],
        "layout": layout,
        "deployable": not built["problems"],
        "problems": built["problems"],
        "runtime": {"source": built["source"], "pins": built["pins"], "wheels": built["wheels"],
                    "bytecode": built["bytecode"]},
        "package": built["package"],
        "environment": env,
        "handler": "handler.handler",
        "invocation": measured,
        "latency_gate_ms": gate,
    }


def package_metrics(report: dict) -> dict:
    """The figures `dvc metrics` tracks, flat."""
    inv = report["invocation"]
    pkg, rec = inv.get("package", {}), (report.get("cost") or {}).get("recommended") or {}
    r = lambda v, n=3: None if v is None else round(v, n)  # noqa: E731
    return {
        "format": report["format"], "deployable": report["deployable"],
        "package_zipped_bytes": report["package"].get("zip_bytes"),
        "package_unzipped_bytes": report["package"]["unzipped_bytes"],
        "init_ms": r(pkg.get("init_ms"), 1), "warm_p50_ms": r(pkg.get("p50_ms")), "warm_p95_ms": r(pkg.get("p95_ms")),
        "peak_rss_mb": r(pkg.get("peak_rss_mb"), 1),
        "torch_init_ms": r(inv.get("torch_baseline", {}).get("init_ms"), 1),
        "init_speedup_vs_torch": r(inv.get("init_speedup"), 2),
        "recommended_memory_mb": rec.get("memory_mb"),
        "cost_per_1m_invocations_usd": r(rec.get("cost_per_1m_usd"), 4),
    }


def _swap_into_place(staged: Path, out: Path) -> None:
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    if out.exists():
        os.replace(out, old)
    os.replace(staged, out)
    shutil.rmtree(old, ignore_errors=True)


def _log_mlflow(p: Pipeline, run_dir: Path, out: Path, report: dict, metrics_file: Path, cost_csv: Path) -> None:
    """One `package` run in the pipeline's experiment, nested under its last pipeline run when known."""
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    from pipelines.tracking import default_tracking_uri

    client = MlflowClient(tracking_uri=default_tracking_uri(p.root))
    experiment = p.spec.tracking.experiment or p.name
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(
        experiment, artifact_location=(p.root / "mlartifacts" / experiment).resolve().as_uri())
    tags = {"lambdaslim.pipeline": p.name, "lambdaslim.step": "package", "lambdaslim.format": report["format"]}
    parent = _parent_run(client, run_dir, exp_id)
    if parent:
        tags["mlflow.parentRunId"] = parent
    run = client.create_run(exp_id, run_name="package", tags=tags)
    rid, now = run.info.run_id, int(time.time() * 1000)
    layout = report["layout"]
    params = {"format": report["format"], "requested_format": report["requested_format"],
              "reason": report["reason"][:500],
              "python": layout["python"], "arch": layout["arch"], "os": layout["os_name"],
              "base_image": layout["base_image"] or "", "deps_source": report["runtime"]["source"]}
    numbers = {k: float(v) for k, v in package_metrics(report).items() if isinstance(v, (int, float)) and v is not None}
    client.log_batch(rid, metrics=[Metric(k, v, now, 0) for k, v in numbers.items()],
                     params=[Param(k, str(v)) for k, v in params.items()])
    for f in (out / "report.json", out / "manifest.json", out / "cost.png", metrics_file, cost_csv):
        if f.is_file():
            client.log_artifact(rid, str(f))
    client.set_terminated(rid, "FINISHED")


def _parent_run(client, run_dir: Path, exp_id: str) -> str | None:
    report = run_dir / "report.json"
    if not report.is_file():
        return None
    rid = json.loads(report.read_text()).get("mlflow_run_id")
    if not rid:
        return None
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(rid)
    except MlflowException:  # the pipeline ran against another tracking store
        return None
    return rid if run.info.experiment_id == exp_id else None
