"""Run a pipeline: for the baseline and after every stage, benchmark -> gate -> track; then select."""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from compressors import REGISTRY, Artifact, StageContext
from compressors.base import StageConfigBase, Technique
from pipelines import benchmarks
from pipelines.data import Split, load_split
from pipelines.digest import digest_dir, digest_json
from pipelines.gates import Verdict, accuracy_gate, ceiling_gate
from pipelines.locks import pipeline_lock, sweep_stale_temps
from pipelines.records import Candidate, write_json_atomic
from pipelines.runtime import resolve_model_path
from pipelines.selection import finish_run, select_best, write_best, write_dvc_outputs
from pipelines.spec import Pipeline, load_pipeline, stage_names
from pipelines.targets import budgets_for
from pipelines.tracking import MlflowTracker, Tracker, default_tracking_uri
from pipelines.variants import Variant


@dataclass
class RunResult:
    pipeline: str
    run_dir: Path
    candidates: list[Candidate]
    best: Candidate | None
    parent_run_id: str


@dataclass
class Step:
    index: int  # 0 = baseline
    name: str
    kind: str
    cfg: StageConfigBase | None
    variant: str | None = None  # the variant whose own step it is; None when every chain shares it
    plan: str = ""  # identity of the chain up to here: equal in two variants -> run, measured and recorded once


@dataclass
class Chain:
    variant: Variant | None  # None: a pipeline without variants
    steps: list[Step]


@dataclass
class Session:
    """A loaded pipeline with its data, ready to run stages, measure and gate candidates."""

    p: Pipeline
    eval_split: Split
    calibration: Split | None
    ctx: StageContext
    candidates: list[Candidate] = field(default_factory=list)
    _baseline: tuple[Artifact, str] | None = None

    @classmethod
    def open(cls, file: str | Path) -> "Session":
        p = load_pipeline(file)
        d = p.spec.data
        eval_split = _split(p, d.eval, p.spec.model.label_names)
        calibration = _split(p, d.calibration, p.spec.model.label_names) if d.calibration else None
        train = _split(p, d.train, p.spec.model.label_names) if d.train else None
        ctx = StageContext(sample_texts=(calibration or eval_split).texts[:64], max_length=d.max_length,
                           calibration=calibration, cache_dir=p.resolve(p.spec.artifacts_dir) / "stages" / "cache",
                           train=train, root=p.root)
        s = cls(p, eval_split, calibration, ctx)
        if any("teacher" in REGISTRY[st.kind].uses_for(st) for st in p.all_stages()):
            s.ctx = replace(ctx, teacher=s.baseline()[0])
        return s

    @property
    def run_dir(self) -> Path:
        return self.p.run_dir

    @property
    def stage_store(self) -> Path:
        """Shared by every pipeline of the project: the same (input, config, code) is computed once."""
        return self.p.resolve(self.p.spec.artifacts_dir) / "stages"

    def steps(self) -> list[Step]:
        spec = self.p.spec
        return [Step(0, "baseline", "baseline", None)] + [
            Step(i + 1, n, s.kind, s) for i, (n, s) in enumerate(zip(self.p.stage_names(), spec.stages))]

    def chains(self) -> list[Chain]:
        """The pipeline's chain, or one per variant. A step that every variant's chain holds (same stages with the
        same configs up to it) is shared: it belongs to no variant and runs, is measured and recorded once."""
        if not self.p.variants:
            return [Chain(None, self.steps())]
        chains = [Chain(v, self._planned(v.stages)) for v in self.p.variants]
        shared = set.intersection(*({st.plan for st in c.steps} for c in chains))
        for c in chains:
            for st in c.steps:
                st.variant = None if st.plan in shared else c.variant.name
        return chains

    def _planned(self, stages) -> list[Step]:
        key = plan = self.baseline()[1]
        steps = [Step(0, "baseline", "baseline", None, plan=plan)]
        for i, (name, cfg) in enumerate(zip(stage_names(stages), stages), start=1):
            key = self.stage_key(key, REGISTRY[cfg.kind], cfg)
            # The key leaves out the name and fallback settings, which change what is recorded: they count here.
            plan = digest_json({"after": plan, "key": key, "name": name, "config": cfg.model_dump(mode="json")})
            steps.append(Step(i, name, cfg.kind, cfg, plan=plan))
        return steps

    def baseline(self) -> tuple[Artifact, str]:
        if self._baseline is None:  # digesting a model reads every byte: once per session
            model_dir = _model_dir(self.p)
            self._baseline = Artifact(model_dir, "pytorch"), digest_dir(model_dir)
        return self._baseline

    def stage_key(self, input_key: str, tech: Technique, cfg: StageConfigBase) -> str:
        spec = self.p.spec
        parts = {"input": input_key, "config": cfg.model_dump(mode="json", exclude={"name", "fallback"}),
                 "code": tech.code_version, "max_length": spec.data.max_length,
                 "calibration": spec.data.calibration and spec.data.calibration.model_dump()}
        # Only techniques that read them are keyed by the train split, the teacher and model folders they name,
        # so adding data.train to a pipeline leaves its quantization stages' outputs valid.
        if "train" in tech.uses_for(cfg):
            parts["train"] = spec.data.train and spec.data.train.model_dump()
        if "teacher" in tech.uses_for(cfg):
            parts["teacher"] = self.baseline()[1]
        dirs = {k: digest_dir(self.ctx.resolve(v)) for k, v in cfg if k.endswith("_dir") and isinstance(v, str)}
        if dirs:
            parts["dirs"] = dirs
        return digest_json(parts)

    def execute(self, step: Step, cfg: StageConfigBase, inp: Artifact, input_key: str,
                folder: Path | None = None) -> tuple[Artifact, str, dict, bool]:
        """Run (or reuse) one stage; returns (artifact, key, info, cached)."""
        tech = REGISTRY[step.kind]
        key = self.stage_key(input_key, tech, cfg)
        out = (folder or self.stage_store) / f"{step.kind}-{key[:16]}"
        work = self.stage_store / "work" / out.name
        info, cached = _run_stage(tech, cfg, inp, out, replace(self.ctx, work_dir=work, stage_key=key))
        shutil.rmtree(work, ignore_errors=True)  # checkpoints are only needed until the output exists
        return Artifact(out, tech.produces), key, info, cached

    def materialize(self, upto: int) -> tuple[Artifact, str]:
        """The input artifact of step `upto`, running (or reusing) every stage before it."""
        artifact, key = self.baseline()
        for step in self.steps()[1:upto]:
            artifact, key, _, _ = self.execute(step, step.cfg, artifact, key)
        return artifact, key

    def measure(self, step: Step, artifact: Artifact, key: str, cfg, info: dict) -> Candidate:
        p, spec = self.p, self.p.spec
        budgets = budgets_for(p.target, artifact.format)
        bench_key = digest_json({"artifact": key, "benchmark": spec.benchmark.model_dump(),
                                 "eval": spec.data.eval.model_dump(), "threads": budgets.threads,
                                 "scale": budgets.latency_scale, "max_length": spec.data.max_length})
        # The baseline is shared by every pipeline of the project, so is its measurement.
        cache_dir = artifact.path if step.index else self.stage_store / f"baseline-{key[:16]}"
        cache = cache_dir / f"bench-{bench_key[:12]}.json"
        if cache.exists():
            metrics = json.loads(cache.read_text())
        else:
            metrics = measure(artifact, self.eval_split, spec, budgets.threads, budgets.latency_scale)
            write_json_atomic(cache, metrics)
        size = benchmarks.measure_size(artifact.path)
        metrics |= {"size_bytes": size, "size_mb": round(size / 1e6, 3)}
        cand = Candidate(stage=step.name, kind=step.kind, index=step.index, path=str(artifact.path),
                         format=artifact.format, size_bytes=size, config_digest=key[:16],
                         config=cfg.model_dump(mode="json") if cfg is not None else {"model": spec.model.path},
                         metrics=metrics, stage_info=info, config_key=key, variant=step.variant)
        baseline = self.candidates[0].metrics if self.candidates else metrics
        cand.gates = evaluate_gates(p, metrics, baseline, budgets)
        return cand


def run_pipeline(file: str | Path, tracker: Tracker | None = None,
                 progress: Callable[[str], None] = print) -> RunResult:
    s = Session.open(file)
    # One run per pipeline at a time (a second one waits, then reuses every finished stage); different
    # pipelines run side by side, sharing the stage store, whose entries are written whole or not at all.
    with pipeline_lock(s.run_dir, progress):
        s.stage_store.mkdir(parents=True, exist_ok=True)
        for left in sweep_stale_temps(s.stage_store, depth=2) + sweep_stale_temps(s.run_dir, depth=2):
            progress(f"removed {left.relative_to(s.p.root) if left.is_relative_to(s.p.root) else left} "
                     f"(left half-written by a process that was killed)")
        return _run_locked(s, tracker or open_tracker(s.p), progress)


def _run_locked(s: Session, tracker: Tracker, progress: Callable[[str], None]) -> RunResult:
    p, spec = s.p, s.p.spec
    variants = f" then {len(p.variants)} variant(s)" if p.variants else ""
    progress(f"pipeline {p.name}: {len(spec.stages)} stage(s){variants}, target {p.target.name} "
             f"({budgets_for(p.target, 'onnx').describe()})")
    parent = tracker.start_pipeline(p.name, {
        "pipeline_file": str(p.file), "target": p.target.name, "memory_mb": p.target.memory_mb,
        "architecture": p.target.architecture, "package_type": p.target.package_type,
        "vcpus": round(p.target.vcpus, 3), "eval_samples": len(s.eval_split), "stages": ",".join(p.stage_names()),
    }, {"lambdaslim.target": p.target.name})
    failed, best = True, None
    try:
        recorded: dict[str, Candidate] = {}  # plan -> candidate: what variants share is recorded once
        for chain in s.chains():
            _run_chain(s, chain, tracker, recorded, progress)
        best = select_best(s.candidates, spec.objective)
        if best is not None:
            write_best(s.run_dir, best)
        write_dvc_outputs(s.run_dir, p.name, s.candidates, best, parent)
        finish_run(p, s.candidates, best, tracker, progress)  # Pareto plot and table, why it won, registry
        failed = False
    finally:
        passed = [c for c in s.candidates if c.passed]
        tracker.end_pipeline({"candidates": len(s.candidates), "candidates_passed": len(passed)},
                             {"lambdaslim.selected": best.label if best else "none"}, failed)
    return RunResult(p.name, s.run_dir, s.candidates, best, parent)


def _run_chain(s: Session, chain: Chain, tracker: Tracker, recorded: dict[str, Candidate],
               progress: Callable[[str], None]) -> None:
    """Run one chain from the baseline, each step benchmarked, gated and tracked.

    In MLflow, a variant is a child run of the pipeline's parent run, and its own candidates are nested
    under it (also tagged `lambdaslim.variant`): ticking the variant runs and pressing Compare lines the
    variants up side by side, their grid values as params and their final candidate's figures as metrics,
    while the shared stages and the baseline stay single children of the parent, recorded once.
    """
    from pipelines.fallback import repair_accuracy

    spec, v = s.p.spec, chain.variant
    tag, steps = (f"{v.name}: " if v else ""), chain.steps
    variant_run = tracker.start_variant(v.name, v.values | {"variant.stages": ",".join(st.name for st in steps[1:])},
                                        {"lambdaslim.variant": v.name}) if v else None
    artifact, key = s.baseline()
    last, failed = None, True
    try:
        for step in steps:
            t0 = time.perf_counter()
            if v is not None and step.plan in recorded:  # another variant ran it: same stages, same configs
                last = recorded[step.plan]
                artifact, key = Artifact(Path(last.path), last.format), last.config_key
                progress(f"{tag}[{step.index + 1}/{len(steps)}] {step.name}: recorded above as {last.label}")
                continue
            progress(f"{tag}[{step.index + 1}/{len(steps)}] {step.name} ...")
            info, cached, trials = {}, False, []
            if step.cfg is not None:
                inp, inp_key = artifact, key
                artifact, key, info, cached = s.execute(step, step.cfg, inp, inp_key)
            cand = s.measure(step, artifact, key, step.cfg, info)
            cand.cached = cached
            if getattr(step.cfg, "fallback", None) is not None and not _accuracy_passed(cand):
                cand, trials = repair_accuracy(s, step, cand, inp, inp_key, progress)
                artifact, key = Artifact(Path(cand.path), cand.format), cand.config_key
            s.candidates.append(cand)
            record = write_candidate(s.run_dir, cand)
            run_id = tracker.log_candidate(cand, record, artifact.path if spec.tracking.log_models else None,
                                           parent_run_id=variant_run if step.variant else None)
            for trial in trials:
                tracker.log_candidate(trial, write_candidate(s.run_dir, trial, suffix=f"trial{trial.trial}"),
                                      None, parent_run_id=run_id)
            recorded[step.plan] = last = cand
            progress(f"{tag}[{step.index + 1}/{len(steps)}] {step.name}: {_summary(cand, s.candidates[0])} "
                     f"({time.perf_counter() - t0:.1f}s{', cached' if cand.cached else ''})")
        failed = False
    finally:
        if variant_run is not None:
            tracker.end_variant(variant_run, last, failed)


def open_tracker(p: Pipeline) -> MlflowTracker:
    return MlflowTracker(default_tracking_uri(p.root), p.spec.tracking.experiment or p.name, p.root / "mlartifacts")


def _accuracy_passed(c: Candidate) -> bool:
    return all(v.passed for v in c.gates if v.gate == "accuracy")


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


def _run_stage(tech: Technique, cfg, inp: Artifact, out: Path, ctx: StageContext) -> tuple[dict, bool]:
    """Run one technique into a temporary folder and rename it into place only when complete."""
    if (out / "stage.json").exists():
        return json.loads((out / "stage.json").read_text())["info"], True
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    result = tech.fn(cfg, inp, tmp, ctx)
    info = dict(result.info)
    write_json_atomic(tmp / "stage.json", {"kind": tech.kind, "config": cfg.model_dump(mode="json"),
                                           "code_version": tech.code_version, "input": str(inp.path), "info": info})
    if out.exists() and not (out / "stage.json").exists():
        # Not written by this function (its renames are whole): never mistake it for a finished stage.
        broken = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, broken)
        shutil.rmtree(broken, ignore_errors=True)
    try:
        os.replace(tmp, out)
    except OSError:  # another run finished the same stage first: keep theirs, it is identical
        shutil.rmtree(tmp, ignore_errors=True)
    return info, False


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


def write_candidate(run_dir: Path, cand: Candidate, suffix: str = "") -> Path:
    folder = run_dir / "candidates" / (cand.variant or "")  # a variant's own: its stage names recur in others
    path = folder / f"{cand.index:02d}-{cand.stage}{'-' + suffix if suffix else ''}.json"
    write_json_atomic(path, cand.to_dict())
    return path


def _summary(c: Candidate, base: Candidate) -> str:
    m = c.metrics
    drop = base.metrics["accuracy"] - m["accuracy"]
    failed = c.failed_gates()
    return (f"acc {m['accuracy']:.2f}% ({-drop:+.2f}) | {c.size_bytes / 1e6:,.1f} MB | "
            f"p50 {m['latency_p50_ms']:.2f} ms p95 {m['latency_p95_ms']:.2f} ms | "
            + ("PASS" if not failed else "FAIL " + ", ".join(v.gate for v in failed)))
