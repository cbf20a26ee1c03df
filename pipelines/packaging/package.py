"""`lambdaslim package`: build the best candidate's Lambda package, invoke it as Lambda would, price it.

Writes OUT (default artifacts/<pipeline>/package/): function.zip or context/ (a Docker build context),
manifest.json (files, sizes, sha256), report.json (format and why, runtime audit, invocations, cost)
and cost.png; beside it package-metrics.json (what `dvc metrics` reads) and package-cost.csv.
"""
from __future__ import annotations

import json
import shutil
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from lambdaslim.aws import limits as L
from lambdaslim.data.splits import load_declared
from lambdaslim.packaging import build, cost, deps
from lambdaslim.packaging.deps import PackagingError
from lambdaslim.packaging.measure import RIC_DISTRIBUTIONS, measure_package
from lambdaslim.packaging.report import package_metrics, package_report
from lambdaslim.packaging.request_limits import handler_env
from lambdaslim.spec.load import load_pipeline
from lambdaslim.spec.model_ref import model_dir
from lambdaslim.spec.pipeline import Pipeline, project_root
from lambdaslim.store.atomic import fresh_temp_dir, replace_dir, write_json_atomic
from lambdaslim.store.locks import sweep_stale_temps
from lambdaslim.tracking.tracker import open_tracker

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
    env = handler_env(p.spec.data.max_length, p.name)
    name = f"{p.name}/{candidate.get('stage', best_dir.name)}"
    progress(f"package {name}: --format {opts.format}, python{target.python} {arch}, deps from {opts.deps_from}")

    out.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_temps(out.parent)  # what a killed `package` left (its work folder can hold 400 MB)
    # Named like every temporary of the project, so a killed package's leftovers are swept by the next run.
    work = fresh_temp_dir(out.parent / f"{out.name}-work")
    try:
        staged = work / "out"
        staged.mkdir()
        built = _build(best_dir, work, staged, opts.format, target.python, arch, direct_upload, opts.deps_from,
                       env, name, progress)
        split = load_declared(p.spec.data.eval, p.root, p.spec.model.label_names)
        gate = p.spec.gates.latency_p95_ms
        measured = measure_package(built, split, p.spec.model.label_names, opts, target.python, arch, env,
                                   baseline_model_dir(p), work, progress)
        report = package_report(built, candidate, config, opts, env, measured, gate)
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
        replace_dir(staged, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report["out"] = str(out)
    write_json_atomic(metrics_file, package_metrics(report))
    _track(p, run_dir, out, report, metrics_file, cost_csv, opts.registry_model, candidate.get("config_digest", ""),
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


def baseline_model_dir(p: Pipeline) -> Path | None:
    """The fp32 PyTorch model the pipeline started from (for the torch+transformers handler); None online."""
    if p.spec.model.path.startswith("hf:"):
        return None
    d = model_dir(p.spec.model.path, p.root)
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


def _track(p: Pipeline, run_dir: Path, out: Path, report: dict, metrics_file: Path, cost_csv: Path,
           registry_model: str | None, config_digest: str, progress) -> None:
    """One `package` run in the pipeline's experiment (nested under its last run when the store holds it),
    and the package attached to the registered version that holds the candidate."""
    tracker = open_tracker(p.root, p.spec.tracking.experiment or p.name)
    layout = report["layout"]
    params = {"format": report["format"], "requested_format": report["requested_format"],
              "reason": report["reason"][:500], "python": layout["python"], "arch": layout["arch"],
              "os": layout["os_name"], "base_image": layout["base_image"] or "", "deps_source": report["runtime"]["source"]}
    numbers = {k: float(v) for k, v in package_metrics(report).items() if isinstance(v, (int, float)) and v is not None}
    parent = _pipeline_run(run_dir)
    tracker.log_report("package", params, numbers,
                       [out / "report.json", out / "manifest.json", out / "cost.png", metrics_file, cost_csv],
                       tags={"lambdaslim.pipeline": p.name, "lambdaslim.step": "package",
                             "lambdaslim.format": report["format"]}, parent_run_id=parent)
    if registry_model:
        done = tracker.attach_package(registry_model, config_digest, out, metrics_file, package_metrics(report))
        progress(f"  registry: attached to {registry_model} version {done['version']} (run {done['run_id']})"
                 if done else f"  registry: no version of {registry_model} holds candidate {config_digest or '?'}; "
                              f"nothing attached")


def _pipeline_run(run_dir: Path) -> str | None:
    report = run_dir / "report.json"
    return json.loads(report.read_text()).get("mlflow_run_id") if report.is_file() else None
