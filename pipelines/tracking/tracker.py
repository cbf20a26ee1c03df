"""Tracking behind one small interface; MLflow is its only real implementation.

One parent run per pipeline run, one nested run per candidate (baseline and each stage), all with
the same metric names so the MLflow UI compares them column by column. A pipeline with variants adds
one child run per variant (its grid values as params, its last candidate's figures as metrics), with
that variant's own candidates nested under it; what every variant shares stays under the parent.

A parent run is tagged with the process that owns it (`lambdaslim.host`, `lambdaslim.pid`,
`lambdaslim.pid_started`). A run left RUNNING by a process that was killed is closed as KILLED (with
its nested runs) by the next run of the same pipeline on that host, which names it in
`lambdaslim.resumes`. Several processes may share one sqlite store: MLflow creates a new store's tables
unguarded, so opening the store and creating the experiment are serialized by a file lock beside the
store (tracking.store); later writes wait on sqlite's own lock (MLflow sets a 20 s busy timeout).
"""
from __future__ import annotations

import time
from pathlib import Path

from lambdaslim.records import Candidate
from lambdaslim.store import locks
from lambdaslim.tracking import model_registry as registry
from lambdaslim.tracking.protocol import NullTracker, Tracker
from lambdaslim.tracking.store import default_tracking_uri, store_lock

__all__ = ["MlflowTracker", "NullTracker", "Tracker", "default_tracking_uri"]

# Figures every candidate run carries under the same name (stage-specific extras are `stage.*`).
# latency_* are gated (from CPU time under the target's quota); wall_* and cpu_* are what they come from.
BENCHMARK_METRICS = ("accuracy", "macro_f1", "size_bytes", "size_mb", "latency_p50_ms", "latency_p95_ms",
                     "latency_p99_ms", "latency_mean_ms", "latency_p95_spread_ms", "wall_p50_ms", "wall_p95_ms",
                     "cpu_p50_ms", "cpu_p95_ms", "peak_rss_mb", "peak_rss_typical_mb", "init_s")


def _gate_tags(cand: Candidate) -> dict:
    return {"gates.passed": str(cand.passed).lower(), **{f"gate.{v.gate}": "pass" if v.passed else "fail"
                                                         for v in cand.gates}}


def _figures(cand: Candidate) -> dict:
    """Benchmark figures and gate margins, named alike in every run so the UI compares them column by column."""
    return ({k: cand.metrics[k] for k in BENCHMARK_METRICS if k in cand.metrics}
            | {f"gate.{v.gate}.margin": v.margin for v in cand.gates})


def _run_key(cand: Candidate) -> tuple:
    return getattr(cand, "label", cand.stage), cand.trial, cand.stage_key


class MlflowTracker:
    def __init__(self, tracking_uri: str, experiment: str, artifact_root: Path):
        from mlflow.tracking import MlflowClient

        self.uri = tracking_uri
        with store_lock(tracking_uri):
            self.client = MlflowClient(tracking_uri=tracking_uri)
            exp = self.client.get_experiment_by_name(experiment)  # creates the store if new
            if exp is None:
                # An explicit location keeps artifacts beside the store rather than in whatever the cwd is.
                self.experiment_id = self.client.create_experiment(
                    experiment, artifact_location=(artifact_root / experiment).resolve().as_uri())
            else:
                self.experiment_id = exp.experiment_id
        self.parent_id: str | None = None
        self._candidate_runs: dict[tuple, str] = {}  # candidate -> its run, for the registry

    def start_pipeline(self, name: str, params: dict, tags: dict) -> str:
        run = self.client.create_run(self.experiment_id, run_name=f"{name}-{time.strftime('%Y%m%d-%H%M%S')}",
                                     tags={"lambdaslim.pipeline": name, **locks.identity(), **tags})
        self.parent_id = run.info.run_id
        resumed = self.close_dangling(name)
        if resumed:
            self.client.set_tag(self.parent_id, "lambdaslim.resumes", ",".join(resumed))
        self._log_params(self.parent_id, params)
        return self.parent_id

    def close_dangling(self, name: str) -> list[str]:
        """Parent runs of this pipeline still RUNNING although their process (on this host) is gone:
        marked KILLED with every nested run still RUNNING under them. Returns their ids, oldest first."""
        running = self._search("attributes.status = 'RUNNING'")
        children: dict[str, list] = {}
        for r in running:
            children.setdefault(r.data.tags.get("mlflow.parentRunId", ""), []).append(r)
        dead = [r for r in running if r.info.run_id != self.parent_id and "mlflow.parentRunId" not in r.data.tags
                and r.data.tags.get("lambdaslim.pipeline") == name and locks.owner_gone(r.data.tags)]
        dead.sort(key=lambda r: r.info.start_time)
        for r in dead:
            t = r.data.tags
            self.client.set_tag(r.info.run_id, "lambdaslim.killed",
                                f"process {t['lambdaslim.pid']} on {t['lambdaslim.host']} ended without closing "
                                f"this run; closed by run {self.parent_id}")
            self.client.set_tag(r.info.run_id, "lambdaslim.resumed_by", self.parent_id)
            stack = [r]
            while stack:
                run = stack.pop()
                stack += children.get(run.info.run_id, [])
                self.client.set_terminated(run.info.run_id, "KILLED")
        return [r.info.run_id for r in dead]

    def _search(self, filter_string: str) -> list:
        runs, token = [], None
        while True:
            page = self.client.search_runs([self.experiment_id], filter_string, max_results=1000, page_token=token)
            runs += list(page)
            token = page.token
            if not token:
                return runs

    def log_candidate(self, cand: Candidate, record_file: Path, model_dir: Path | None,
                      parent_run_id: str | None = None) -> str:
        from mlflow.entities import Metric

        name = cand.stage if cand.trial is None else f"{cand.stage}/trial-{cand.trial}"
        run = self.client.create_run(self.experiment_id, run_name=name, tags={
            "mlflow.parentRunId": parent_run_id or self.parent_id,
            "lambdaslim.stage": cand.stage, "lambdaslim.kind": cand.kind, "lambdaslim.format": cand.format,
            "lambdaslim.cached": str(cand.cached).lower(), **_gate_tags(cand),
            **({"lambdaslim.variant": cand.variant} if cand.variant else {}),
        })
        rid = run.info.run_id
        self._candidate_runs[_run_key(cand)] = rid
        try:
            self._log_params(rid, {"stage.index": cand.index, "stage.kind": cand.kind,
                                   "config_digest": cand.config_digest, **cand.config})
            now = int(time.time() * 1000)
            metrics = _figures(cand)
            metrics |= {f"stage.{k}": v for k, v in cand.stage_info.items() if isinstance(v, (int, float))}
            self.client.log_batch(rid, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()])
            self.client.log_artifact(rid, str(record_file))
            if model_dir is not None:
                self.client.log_artifacts(rid, str(model_dir), artifact_path="model")
        except BaseException:
            self.client.set_terminated(rid, "FAILED")  # not left RUNNING; the error goes on
            raise
        self.client.set_terminated(rid, "FINISHED")
        return rid

    def start_variant(self, name: str, params: dict, tags: dict) -> str:
        """A child run of the pipeline run for one variant; its own candidates nest under it."""
        run = self.client.create_run(self.experiment_id, run_name=name, tags={
            "mlflow.parentRunId": self.parent_id, "lambdaslim.kind": "variant", **tags})
        self._log_params(run.info.run_id, params)
        return run.info.run_id

    def end_variant(self, run_id: str, final: Candidate | None, failed: bool) -> None:
        """The variant's outcome, its last candidate, under the same metric names as a candidate run."""
        from mlflow.entities import Metric

        if final is not None:
            now = int(time.time() * 1000)
            self.client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in _figures(final).items()])
            for k, v in (_gate_tags(final) | {"lambdaslim.final_candidate": final.label}).items():
                self.client.set_tag(run_id, k, v)
        self.client.set_terminated(run_id, "FAILED" if failed else "FINISHED")

    def log_report(self, name: str, params: dict, metrics: dict, files: list[Path], tags: dict | None = None,
                   parent_run_id: str | None = None) -> str:
        """A run of its own for a diagnosis (per-layer sensitivity) or a package: params, metrics, files; nested
        under `parent_run_id` when that run is in this store."""
        from mlflow.entities import Metric

        tags = {"lambdaslim.report": name, **(tags or {})}
        if parent_run_id and registry.run_exists(self.client, parent_run_id):
            tags["mlflow.parentRunId"] = parent_run_id
        run = self.client.create_run(self.experiment_id, run_name=name, tags=tags)
        rid = run.info.run_id
        self._log_params(rid, params)
        now = int(time.time() * 1000)
        self.client.log_batch(rid, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()])
        for f in files:
            if Path(f).is_file():
                self.client.log_artifact(rid, str(f))
        self.client.set_terminated(rid, "FINISHED")
        return rid

    def attach_package(self, name: str, config_digest: str, package_dir: Path, metrics_file: Path,
                       metrics: dict) -> dict | None:
        """The package goes to the registered version of `name` that holds the candidate; None if none does."""
        return registry.attach_package(self.client, name, config_digest, package_dir, metrics_file, metrics)

    def log_files(self, files: list[Path]) -> None:
        """Files of the whole run (the Pareto plot and table) on the parent run."""
        for f in files:
            self.client.log_artifact(self.parent_id, str(f))

    def candidate_run(self, cand: Candidate) -> str | None:
        """The run this tracker logged for `cand`."""
        return self._candidate_runs.get(_run_key(cand))

    def register_candidate(self, name: str, cand: Candidate, tags: dict, run_id: str | None,
                           model_dir: Path, description: str = "") -> dict | None:
        """A new version of registered model `name` whose source is the candidate's run `run_id`; a candidate
        this store never tracked (no run, or a run of another store) gets a run of its own for its model."""
        rid = run_id if run_id and registry.run_exists(self.client, run_id) else None
        if rid is None:
            run = self.client.create_run(self.experiment_id, run_name=f"model-{cand.stage}", tags={
                **({"mlflow.parentRunId": self.parent_id} if self.parent_id else {}),
                "lambdaslim.stage": cand.stage, "lambdaslim.format": cand.format})
            rid = run.info.run_id
            try:
                self._log_params(rid, {"config_digest": cand.config_digest, "model_dir": str(model_dir)})
                registry.ensure_model_logged(self.client, rid, model_dir)
            except BaseException:
                self.client.set_terminated(rid, "FAILED")  # not left RUNNING; the error goes on
                raise
            self.client.set_terminated(rid, "FINISHED")
        else:
            registry.ensure_model_logged(self.client, rid, model_dir)
        return registry.register_version(self.client, name, rid, tags, description)

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


def open_tracker(root: Path, experiment: str) -> MlflowTracker:
    """The project's tracker for `experiment`: its store (tracking.store) and artifacts beside it."""
    return MlflowTracker(default_tracking_uri(root), experiment, root / "mlartifacts")
