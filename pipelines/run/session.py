"""A loaded pipeline with its data, ready to run (or reuse) stages and to measure and gate candidates."""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path

from lambdaslim.compressors import TECHNIQUES
from lambdaslim.compressors.base import Artifact, StageConfigBase, StageContext, Technique
from lambdaslim.data.splits import Split, declared_digest, load_declared
from lambdaslim.measure.candidate import measure_candidate
from lambdaslim.measure.latency_worker import LatencyWorker
from lambdaslim.records import Candidate
from lambdaslim.run.gates import evaluate_gates
from lambdaslim.spec.load import load_pipeline
from lambdaslim.spec.model_ref import model_dir
from lambdaslim.spec.pipeline import Pipeline, stage_names
from lambdaslim.spec.variants import Variant
from lambdaslim.store.digest import digest_dir, digest_json
from lambdaslim.store.keys import ARTIFACT_LIBRARIES, library_versions
from lambdaslim.store.stages import run_stage, stage_folder


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
    """Implements the stage bench that fallback and sensitivity use (`run.stage_bench.StageBench`)."""

    p: Pipeline
    eval_split: Split
    calibration: Split | None
    train: Split | None
    ctx: StageContext
    candidates: list[Candidate] = field(default_factory=list)
    _baseline: tuple[Artifact, str] | None = None
    _worker: LatencyWorker | None = None

    @classmethod
    def open(cls, file: str | Path) -> "Session":
        p = load_pipeline(file)
        d, labels = p.spec.data, p.spec.model.label_names
        eval_split = load_declared(d.eval, p.root, labels)
        calibration = load_declared(d.calibration, p.root, labels) if d.calibration else None
        train = load_declared(d.train, p.root, labels) if d.train else None
        ctx = StageContext(sample_texts=(calibration or eval_split).texts[:64], max_length=d.max_length,
                           calibration=calibration, cache_dir=p.resolve(p.spec.artifacts_dir) / "stages" / "cache",
                           train=train, root=p.root)
        s = cls(p, eval_split, calibration, train, ctx)
        if any("teacher" in TECHNIQUES[st.kind].uses_for(st) for st in p.all_stages()):
            s.ctx = replace(ctx, teacher=s.baseline()[0])
        return s

    @property
    def run_dir(self) -> Path:
        return self.p.run_dir

    @property
    def max_length(self) -> int:
        return self.p.spec.data.max_length

    @property
    def stage_store(self) -> Path:
        """Shared by every pipeline of the project: the same stage key is computed once."""
        return self.p.resolve(self.p.spec.artifacts_dir) / "stages"

    def steps(self) -> list[Step]:
        return [Step(0, "baseline", "baseline", None)] + [
            Step(i + 1, n, s.kind, s) for i, (n, s) in enumerate(zip(self.p.stage_names(), self.p.spec.stages))]

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
            key = self.stage_key(key, TECHNIQUES[cfg.kind], cfg)
            # The key leaves out the name and fallback settings, which change what is recorded: they count here.
            plan = digest_json({"after": plan, "key": key, "name": name, "config": cfg.model_dump(mode="json")})
            steps.append(Step(i, name, cfg.kind, cfg, plan=plan))
        return steps

    def baseline(self) -> tuple[Artifact, str]:
        if self._baseline is None:  # digesting a model reads every byte: once per session
            folder = model_dir(self.p.spec.model.path, self.p.root)
            self._baseline = Artifact(folder, "pytorch"), digest_dir(folder)
        return self._baseline

    def stage_key(self, input_key: str, tech: Technique, cfg: StageConfigBase) -> str:
        """Everything that produced a stage's output: its input, config, code (with every project module it
        imports), the library versions that write artifacts, and the content of the data it reads."""
        spec, root = self.p.spec, self.p.root
        uses = tech.uses_for(cfg)
        parts = {"input": input_key, "config": cfg.model_dump(mode="json", exclude={"name", "fallback"}),
                 "code": tech.code_version, "libraries": library_versions(ARTIFACT_LIBRARIES),
                 "max_length": spec.data.max_length}
        # Only techniques that read them are keyed by a split, the teacher and the model folders they name,
        # so adding data.train to a pipeline leaves its quantization stages' outputs valid.
        if "calibration" in uses:
            parts["calibration"] = spec.data.calibration and declared_digest(spec.data.calibration, root)
        if "samples" in uses:  # a few real inputs (export checks): keyed by exactly those texts
            parts["samples"] = digest_json(self.ctx.sample_texts)
        if "train" in uses:
            parts["train"] = spec.data.train and declared_digest(spec.data.train, root)
        if "teacher" in uses:
            parts["teacher"] = self.baseline()[1]
        dirs = {k: digest_dir(self.ctx.resolve(v)) for k, v in cfg if k.endswith("_dir") and isinstance(v, str)}
        if dirs:
            parts["dirs"] = dirs
        return digest_json(parts)

    def execute(self, step: Step, cfg: StageConfigBase, inp: Artifact, input_key: str,
                folder: Path | None = None) -> tuple[Artifact, str, dict, bool]:
        """Run (or reuse) one stage; returns (artifact, key, info, cached)."""
        tech = TECHNIQUES[step.kind]
        key = self.stage_key(input_key, tech, cfg)
        out = stage_folder(folder or self.stage_store, step.kind, key)
        work = self.stage_store / "work" / out.name
        info, cached = run_stage(tech, cfg, inp, out, replace(self.ctx, work_dir=work, stage_key=key))
        shutil.rmtree(work, ignore_errors=True)  # checkpoints are only needed until the output exists
        return Artifact(out, tech.produces), key, info, cached

    def materialize(self, upto: int) -> tuple[Artifact, str]:
        """The input artifact of step `upto`, running (or reusing) every stage before it."""
        artifact, key = self.baseline()
        for step in self.steps()[1:upto]:
            artifact, key, _, _ = self.execute(step, step.cfg, artifact, key)
        return artifact, key

    def measure(self, step: Step, artifact: Artifact, key: str, cfg, info: dict) -> Candidate:
        """Measure one candidate and gate it against the baseline (itself, for the baseline)."""
        p = self.p
        # The baseline is shared by every pipeline of the project, so is its measurement.
        cache_dir = artifact.path if step.index else self.stage_store / f"baseline-{key[:16]}"
        baseline = self.baseline()[0] if step.index else None  # interleaved with it, round by round
        metrics = measure_candidate(artifact, self.eval_split, p, cache_dir, key, baseline, self.latency_worker)
        cand = Candidate(stage=step.name, kind=step.kind, index=step.index, path=str(artifact.path),
                         format=artifact.format, size_bytes=metrics["size_bytes"], config_digest=key[:16],
                         config=cfg.model_dump(mode="json") if cfg is not None else {"model": p.spec.model.path},
                         metrics=metrics, stage_info=info, stage_key=key, variant=step.variant)
        base_metrics = self.candidates[0].metrics if self.candidates else metrics
        cand.gates = evaluate_gates(p, artifact.format, metrics, base_metrics)
        return cand

    def latency_worker(self) -> LatencyWorker:
        """The run's latency-measuring process, started on first use under the target's CPU quota."""
        if self._worker is None:
            self._worker = LatencyWorker(self.p.target.vcpus, os.cpu_count() or 1).__enter__()
        return self._worker

    def close(self) -> None:
        """End the measuring process (and its quota group)."""
        if self._worker is not None:
            self._worker.__exit__(None, None, None)
            self._worker = None

    def ranking_split(self) -> tuple[str, Split]:
        """Where fallback ranks nodes: not the split that judges the gate, when there is another."""
        if self.train is not None:
            return "train", self.train.head(1024)
        if self.calibration is not None:
            return "calibration", self.calibration
        return "eval (no train or calibration split declared)", self.eval_split
