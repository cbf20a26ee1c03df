"""The MLflow model registry: a selected candidate becomes a version of a registered model.

The version's source is the candidate run's `model/` artifacts (logged there now when the run did not log
them); it is tagged with the candidate's gate verdicts and key figures, and the alias `lambda-candidate`
moves to it. A package built later is attached to the version whose `config_digest` tag matches: its files
go to the version's run under `package/`, its figures become `package.*` tags of the version.
Reached through `MlflowTracker.register_candidate` and `lambdaslim package --registry-model`.
"""
from __future__ import annotations

from pathlib import Path

from lambdaslim.records import Candidate

ALIAS = "lambda-candidate"
MODEL_ARTIFACT = "model"


def version_tags(cand: Candidate, pipeline: str, pipeline_file: str | None, objective: str) -> dict[str, str]:
    m = cand.metrics
    tags = {"pipeline": pipeline, "pipeline_file": pipeline_file or "", "stage": cand.stage, "kind": cand.kind,
            "variant": cand.variant or "",
            "format": cand.format, "config_digest": cand.config_digest, "objective": objective,
            "accuracy": f"{m['accuracy']:.4f}", "latency_p95_ms": f"{m['latency_p95_ms']:.4f}",
            "latency_p50_ms": f"{m.get('latency_p50_ms', float('nan')):.4f}",
            "size_mb": f"{cand.size_bytes / 1e6:.3f}", "gates.passed": str(cand.passed).lower()}
    for v in cand.gates:
        tags[f"gate.{v.gate}"] = "pass" if v.passed else "fail"
        tags[f"gate.{v.gate}.margin"] = f"{v.margin:.4f} {v.unit}"
    return tags


def run_exists(client, run_id: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        client.get_run(run_id)
    except MlflowException:  # logged to another tracking store
        return False
    return True


def ensure_model_logged(client, run_id: str, model_dir: Path) -> None:
    """A run logged without its model (tracking.log_models: false) gets it now: the version needs a source."""
    if not client.list_artifacts(run_id, MODEL_ARTIFACT):
        client.log_artifacts(run_id, str(model_dir), artifact_path=MODEL_ARTIFACT)


def register_version(client, name: str, run_id: str, tags: dict[str, str], description: str = "") -> dict:
    """A new version of `name` from the run's model artifacts; the alias moves to it."""
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name, tags={"lambdaslim": "true"},
                                       description="Lambda candidates selected by lambdaslim")
    except MlflowException as e:
        if e.error_code != "RESOURCE_ALREADY_EXISTS":  # another run registered the name first: fine
            raise
    mv = client.create_model_version(name, source=f"runs:/{run_id}/{MODEL_ARTIFACT}", run_id=run_id, tags=tags,
                                     description=description[:5000])
    client.set_registered_model_alias(name, ALIAS, mv.version)
    return {"name": name, "version": int(mv.version), "alias": ALIAS, "run_id": run_id, "source": mv.source}


def find_version(client, name: str, config_digest: str):
    """The version of `name` holding the candidate with this digest: the alias's if it does, else the newest."""
    from mlflow.exceptions import MlflowException

    try:
        aliased = client.get_model_version_by_alias(name, ALIAS)
    except MlflowException:  # no such model, or no alias yet
        return None
    if aliased.tags.get("config_digest") == config_digest:
        return aliased
    found = client.search_model_versions(f"name = '{name}' and tag.config_digest = '{config_digest}'")
    return max(found, key=lambda v: int(v.version)) if found else None


def attach_package(client, name: str, config_digest: str, package_dir: Path, metrics_file: Path,
                   metrics: dict) -> dict | None:
    """Log the package and its metrics to the registered version's run and tag the version; None if unregistered."""
    mv = find_version(client, name, config_digest)
    if mv is None:
        return None
    client.log_artifacts(mv.run_id, str(package_dir), artifact_path="package")
    client.log_artifact(mv.run_id, str(metrics_file), artifact_path="package")
    tags = {"package.format": str(metrics["format"]), "package.deployable": str(metrics["deployable"]).lower()}
    for key, tag, scale in (("package_unzipped_bytes", "package.unzipped_mb", 1e-6),
                            ("package_zipped_bytes", "package.zipped_mb", 1e-6), ("init_ms", "package.init_ms", 1),
                            ("warm_p95_ms", "package.warm_p95_ms", 1), ("peak_rss_mb", "package.peak_rss_mb", 1),
                            ("recommended_memory_mb", "package.recommended_memory_mb", 1)):
        if metrics.get(key) is not None:
            tags[tag] = f"{metrics[key] * scale:.3f}".rstrip("0").rstrip(".")
    for k, v in tags.items():
        client.set_model_version_tag(name, mv.version, k, v)
    return {"name": name, "version": int(mv.version), "run_id": mv.run_id, "tags": tags}
