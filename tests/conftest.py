"""Shared fixtures: a tiny real BERT classifier (built once per session) and project folders around it."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from lambdaslim.compressors import Artifact, StageContext
from lambdaslim.testing.tiny import build_tiny_classifier, make_rows, write_tiny_project

# Tests never reach a hub: everything they load is built here.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_classifier(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def tiny_onnx(tiny_model_dir, tmp_path_factory) -> Artifact:
    from lambdaslim.compressors.export_onnx import ExportOnnxConfig, export_onnx

    out = tmp_path_factory.mktemp("tiny_onnx")
    return export_onnx(ExportOnnxConfig(kind="export_onnx"), Artifact(tiny_model_dir, "pytorch"), out,
                       stage_context()).artifact


def stage_context() -> StageContext:
    texts = [t for t, _ in make_rows(16, 5)]
    return StageContext(sample_texts=texts, max_length=32)


@pytest.fixture
def mlflow_uri(tmp_path, monkeypatch) -> str:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


@pytest.fixture
def make_project(tmp_path, tiny_model_dir):
    """make_project(stages_yaml, gates_yaml="") -> pipeline file in a fresh project folder."""

    def make(stages_yaml: str, gates_yaml: str = "", name: str = "tiny", root: Path | None = None) -> Path:
        return write_tiny_project(root or tmp_path / "project", stages_yaml, gates_yaml, name=name,
                                  model_dir=tiny_model_dir)

    return make


STAGES_ALL = "  - kind: export_onnx\n  - kind: optimize_onnx\n  - kind: quantize_dynamic\n"
