"""Tracking behind one small interface; MLflow is its only real implementation.

One parent run per pipeline run, one nested run per candidate (baseline and each stage), all with
the same metric names so the MLflow UI compares them column by column.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Protocol

from pipelines.records import Candidate

# Figures every candidate run carries under the same name (stage-specific extras are `stage.*`).
BENCHMARK_METRICS = ("accuracy", "macro_f1", "size_bytes", "size_mb", "latency_p50_ms", "latency_p95_ms",
                     "latency_p99_ms", "latency_mean_ms", "peak_rss_mb", "init_s")


class Tracker(Protocol):
    def start_pipeline(self, name: str, params: dict, tags: dict) -> str: ...
    def log_candidate(self, cand: Candidate, record_file: Path, model_dir: Path | None,
                      parent_run_id: str | None = None) -> str: ...
    def log_report(self, name: str, params: dict, metrics: dict, files: list[Path]) -> str: ...
    def end_pipeline(self, metrics: dict, tags: dict, failed: bool) -> None: ...


class NullTracker:
    """For notebooks and quick runs that should leave no trace in a store."""

    def start_pipeline(self, name: str, params: dict, tags: dict) -> str:
        return ""

    def log_candidate(self, cand: Candidate, record_file: Path, model_dir: Path | None,
                      parent_run_id: str | None = None) -> str:
        return ""

    def log_report(self, name: str, params: dict, metrics: dict, files: list[Path]) -> str:
        return ""

    def end_pipeline(self, metrics: dict, tags: dict, failed: bool) -> None:
        return None


def default_tracking_uri(root: Path) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(root / 'mlflow.db').resolve()}"


class MlflowTracker:
    def __init__(self, tracking_uri: str, experiment: str, artifact_root: Path):
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=tracking_uri)
        self.uri = tracking_uri
        exp = self.client.get_experiment_by_name(experiment)
        if exp is None:
            # An explicit location keeps artifacts beside the store rather than in whatever the cwd is.
            self.experiment_id = self.client.create_experiment(
                experiment, artifact_location=(artifact_root / experiment).resolve().as_uri())
        else:
            self.experiment_id = exp.experiment_id
        self.parent_id: str | None = None

    def start_pipeline(self, name: str, params: dict, tags: dict) -> str:
        run = self.client.create_run(self.experiment_id, run_name=f"{name}-{time.strftime('%Y%m%d-%H%M%S')}",
                                     tags={"lambdaslim.pipeline": name, **tags})
        self.parent_id = run.info.run_id
        self._log_params(self.parent_id, params)
        return self.parent_id

    def log_candidate(self, cand: Candidate, record_file: Path, model_dir: Path | None,
                      parent_run_id: str | None = None) -> str:
        from mlflow.entities import Metric

        name = cand.stage if cand.trial is None else f"{cand.stage}/trial-{cand.trial}"
        run = self.client.create_run(self.experiment_id, run_name=name, tags={
            "mlflow.parentRunId": parent_run_id or self.parent_id,
            "lambdaslim.stage": cand.stage, "lambdaslim.kind": cand.kind, "lambdaslim.format": cand.format,
            "lambdaslim.cached": str(cand.cached).lower(),
            "gates.passed": str(cand.passed).lower(),
            **{f"gate.{v.gate}": "pass" if v.passed else "fail" for v in cand.gates},
        })
        rid = run.info.run_id
        self._log_params(rid, {"stage.index": cand.index, "stage.kind": cand.kind,
                               "config_digest": cand.config_digest, **cand.config})
        now = int(time.time() * 1000)
        metrics = {k: cand.metrics[k] for k in BENCHMARK_METRICS if k in cand.metrics}
        metrics |= {f"stage.{k}": v for k, v in cand.stage_info.items() if isinstance(v, (int, float))}
        metrics |= {f"gate.{v.gate}.margin": v.margin for v in cand.gates}
        self.client.log_batch(rid, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()])
        self.client.log_artifact(rid, str(record_file))
        if model_dir is not None:
            self.client.log_artifacts(rid, str(model_dir), artifact_path="model")
        self.client.set_terminated(rid, "FINISHED")
        return rid

    def log_report(self, name: str, params: dict, metrics: dict, files: list[Path]) -> str:
        """A standalone run for a diagnosis (e.g. per-layer sensitivity): params, metrics, files."""
        from mlflow.entities import Metric

        run = self.client.create_run(self.experiment_id, run_name=name, tags={"lambdaslim.report": name})
        rid = run.info.run_id
        self._log_params(rid, params)
        now = int(time.time() * 1000)
        self.client.log_batch(rid, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()])
        for f in files:
            self.client.log_artifact(rid, str(f))
        self.client.set_terminated(rid, "FINISHED")
        return rid

    def end_pipeline(self, metrics: dict, tags: dict, failed: bool) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.parent_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()])
        for k, v in tags.items():
            self.client.set_tag(self.parent_id, k, v)
        self.client.set_terminated(self.parent_id, "FAILED" if failed else "FINISHED")

    def _log_params(self, run_id: str, params: dict) -> None:
        from mlflow.entities import Param

        flat = {k: ("" if v is None else str(v))[:6000] for k, v in params.items()}
        self.client.log_batch(run_id, params=[Param(k, v) for k, v in flat.items()])
