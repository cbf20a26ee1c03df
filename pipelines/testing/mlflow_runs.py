"""Reading MLflow runs back from a tracking store: every run of an experiment, split into pipeline (parent)
runs and stage (child) runs.
"""
from __future__ import annotations

from pathlib import Path


def tracking_uri(root: Path) -> str:
    """The sqlite store a project under `root` tracks to: the one lambdaslim.testing.cli_runs runs it with."""
    return f"sqlite:///{root / 'mlflow.db'}"


def mlflow_runs(uri: str, experiment: str) -> list:
    """Every run of `experiment` in the store at `uri` (none when the experiment does not exist)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    return [] if exp is None else list(client.search_runs([exp.experiment_id], max_results=1000))


def parents_and_children(runs: list) -> tuple[list, list]:
    """(pipeline runs, stage runs): a stage run has a parent run id."""
    return ([r for r in runs if "mlflow.parentRunId" not in r.data.tags],
            [r for r in runs if "mlflow.parentRunId" in r.data.tags])
