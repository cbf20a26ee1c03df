"""Run a pipeline: for the baseline and after every stage, benchmark -> gate -> track; then select."""
from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from compressors import REGISTRY, Artifact, StageContext
from pipelines import benchmarks
from pipelines.data import Split, load_split
from pipelines.digest import digest_dir, digest_json
from pipelines.gates import Verdict, accuracy_gate, ceiling_gate
from pipelines.records import Candidate, write_json_atomic
from pipelines.runtime import resolve_model_path
from pipelines.selection import select_best, write_best, write_dvc_outputs
from pipelines.spec import Pipeline, load_pipeline
from pipelines.targets import budgets_for
from pipelines.tracking import MlflowTracker, Tracker, default_tracking_uri


@dataclass
class RunResult:
    pipeline: str
    run_dir: Path
    candidates: list[Candidate]
    best: Candidate | None
    parent_run_id: str


def run_pipeline(file: str | Path, tracker: Tracker | None = None,
                 progress: Callable[[str], None] = print) -> RunResult:
    p = load_pipeline(file)
    spec = p.spec
    tracker = tracker or MlflowTracker(default_tracking_uri(p.root), spec.tracking.experiment or p.name,
                                       p.root / "mlartifacts")
    eval_split = _split(p, spec.data.eval, spec.model.label_names)
    calibration = _split(p, spec.data.calibration, spec.model.label_names) if spec.data.calibration else None
    ctx = StageContext(sample_texts=(calibration or eval_split).texts[:64], max_length=spec.data.max_length,
                       calibration=calibration)
    run_dir = p.run_dir
    (run_dir / "stages").mkdir(parents=True, exist_ok=True)
    progress(f"pipeline {p.name}: {len(spec.stages)} stage(s), target {p.target.name} "
             f"({budgets_for(p.target, 'onnx').describe()})")

    parent = tracker.start_pipeline(p.name, {
        "pipeline_file": str(p.file), "target": p.target.name, "memory_mb": p.target.memory_mb,
        "architecture": p.target.architecture, "package_type": p.target.package_type,
        "vcpus": round(p.target.vcpus, 3), "eval_samples": len(eval_split), "stages": ",".join(p.stage_names()),
    }, {"lambdaslim.target": p.target.name})
    candidates: list[Candidate] = []
    failed = True
    try:
        model_dir = _model_dir(p)
        artifact = Artifact(model_dir, "pytorch")
        key = digest_dir(model_dir)
        steps = [("baseline", "baseline", None)] + list(zip(p.stage_names(), [s.kind for s in spec.stages], spec.stages))
        for index, (name, kind, cfg) in enumerate(steps):
            t0 = time.perf_counter()
            progress(f"[{index + 1}/{len(steps)}] {name} ...")
            info, cached = {}, True
            if cfg is not None:
                tech = REGISTRY[kind]
                key = digest_json({"input": key, "config": cfg.model_dump(mode="json", exclude={"name"}),
                                   "code": tech.code_version, "max_length": spec.data.max_length,
                                   "calibration": spec.data.calibration and spec.data.calibration.model_dump()})
                out = run_dir / "stages" / f"{index:02d}-{kind}-{key[:12]}"
                info, cached = _run_stage(tech, cfg, artifact, out, ctx)
                artifact = Artifact(out, tech.produces)
            cand = _measure(p, name, kind, index, artifact, key, cfg, info, eval_split, candidates)
            cand.cached = cached and cfg is not None
            candidates.append(cand)
            record = write_candidate(run_dir, cand)
            tracker.log_candidate(cand, record, artifact.path if spec.tracking.log_models else None)
            progress(f"[{index + 1}/{len(steps)}] {name}: {_summary(cand, candidates[0])} "
                     f"({time.perf_counter() - t0:.1f}s{', cached' if cand.cached else ''})")
        best = select_best(candidates, spec.objective)
        if best is not None:
            write_best(run_dir, best)
        write_dvc_outputs(run_dir, p.name, candidates, best, parent)
        failed = False
    finally:
        passed = [c for c in candidates if c.passed]
        best_name = select_best(candidates, spec.objective).stage if passed and not failed else ""
        tracker.end_pipeline({"candidates": len(candidates), "candidates_passed": len(passed)},
                             {"lambdaslim.selected": best_name or "none"}, failed)
    return RunResult(p.name, run_dir, candidates, best, parent)


def _split(p: Pipeline, s, label_names) -> Split:
    src = s.path if s.path.startswith("hf:") else p.resolve(s.path)
    return load_split(src, s.text_column, s.label_column, label_names, limit=s.limit)


def _model_dir(p: Pipeline) -> Path:
    ref = p.spec.model.path
    if ref.startswith("hf:"):
        from huggingface_hub import snapshot_download  # online only: the hub is unreachable offline

        return Path(snapshot_download(ref[3:]))
    resolved = resolve_model_path(ref)
    return Path(resolved) if resolved != ref else p.resolve(ref)


def _run_stage(tech, cfg, inp: Artifact, out: Path, ctx: StageContext) -> tuple[dict, bool]:
    """Run one technique into a temporary folder and rename it into place only when complete."""
    if (out / "stage.json").exists():
        import json

        return json.loads((out / "stage.json").read_text())["info"], True
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    result = tech.fn(cfg, inp, tmp, ctx)
    info = {k: v for k, v in result.info.items()}
    write_json_atomic(tmp / "stage.json", {"kind": tech.kind, "config": cfg.model_dump(mode="json"),
                                           "code_version": tech.code_version, "input": str(inp.path), "info": info})
    try:
        os.replace(tmp, out)
    except OSError:  # another run finished the same stage first: keep theirs, it is identical
        shutil.rmtree(tmp, ignore_errors=True)
    return info, False


def _measure(p: Pipeline, name: str, kind: str, index: int, artifact: Artifact, key: str, cfg, info: dict,
             eval_split: Split, earlier: list[Candidate]) -> Candidate:
    spec = p.spec
    budgets = budgets_for(p.target, artifact.format)
    bench_key = digest_json({"artifact": key, "benchmark": spec.benchmark.model_dump(),
                             "eval": spec.data.eval.model_dump(), "threads": budgets.threads,
                             "scale": budgets.latency_scale, "max_length": spec.data.max_length})
    cache_dir = artifact.path if index else p.run_dir / "baseline"
    cache = cache_dir / f"bench-{bench_key[:12]}.json"
    if cache.exists():
        import json

        metrics = json.loads(cache.read_text())
    else:
        metrics = measure(artifact, eval_split, spec, budgets.threads, budgets.latency_scale)
        write_json_atomic(cache, metrics)
    size = benchmarks.measure_size(artifact.path)
    metrics |= {"size_bytes": size, "size_mb": round(size / 1e6, 3)}
    cand = Candidate(stage=name, kind=kind, index=index, path=str(artifact.path), format=artifact.format,
                     size_bytes=size, config_digest=key[:16],
                     config=cfg.model_dump(mode="json") if cfg is not None else {"model": spec.model.path},
                     metrics=metrics, stage_info=info)
    baseline = earlier[0].metrics if earlier else metrics
    cand.gates = evaluate_gates(p, metrics, baseline, budgets)
    return cand


def measure(artifact: Artifact, split: Split, spec, threads: int, scale: float) -> dict:
    b, max_len = spec.benchmark, spec.data.max_length
    metrics = benchmarks.measure_accuracy(artifact, split, max_len, b.batch_size, threads)
    metrics |= benchmarks.measure_latency(artifact, split.texts, max_len, threads, b.latency_runs,
                                          b.warmup_runs, scale)
    metrics |= benchmarks.measure_memory(artifact, split.texts[0], max_len, threads)
    return metrics


def evaluate_gates(p: Pipeline, m: dict, base: dict, budgets) -> list[Verdict]:
    g = p.spec.gates
    verdicts = [accuracy_gate(m[g.accuracy.metric], base[g.accuracy.metric], g.accuracy.max_drop,
                              g.accuracy.relative, g.accuracy.metric)]
    if g.latency_p95_ms is not None:
        verdicts.append(ceiling_gate("latency_p95", m["latency_p95_ms"], g.latency_p95_ms, "ms",
                                     f"batch 1 at {budgets.vcpus:.2f} vCPU"))
    if g.size_mb is not None:
        verdicts.append(ceiling_gate("size", m["size_mb"], g.size_mb, "MB", "pipeline's size_mb"))
    else:
        verdicts.append(ceiling_gate("size", m["size_mb"], budgets.size_ceiling_bytes / 1e6, "MB",
                                     f"{p.target.package_type} limit {budgets.package_limit_bytes / 1e6:,.0f} MB "
                                     f"- {budgets.runtime_bytes / 1e6:,.1f} MB runtime"))
    if g.memory:
        verdicts.append(ceiling_gate("memory", m["peak_rss_mb"], budgets.memory_limit_mb, "MB",
                                     "peak RSS of a fresh process"))
    return verdicts


def write_candidate(run_dir: Path, cand: Candidate) -> Path:
    path = run_dir / "candidates" / f"{cand.index:02d}-{cand.stage}.json"
    write_json_atomic(path, cand.to_dict())
    return path


def _summary(c: Candidate, base: Candidate) -> str:
    m = c.metrics
    drop = base.metrics["accuracy"] - m["accuracy"]
    failed = c.failed_gates()
    return (f"acc {m['accuracy']:.2f}% ({-drop:+.2f}) | {c.size_bytes / 1e6:,.1f} MB | "
            f"p50 {m['latency_p50_ms']:.2f} ms p95 {m['latency_p95_ms']:.2f} ms | "
            + ("PASS" if not failed else "FAIL " + ", ".join(v.gate for v in failed)))
