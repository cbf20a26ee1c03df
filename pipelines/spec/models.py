"""The pipeline file's schema: fixed pydantic models (extra keys forbidden), stages a discriminated union."""
from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from lambdaslim.compressors import TECHNIQUES

StageConfig = Annotated[Union[tuple(t.config_cls for t in TECHNIQUES.values())], Field(discriminator="kind")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ModelSpec(Strict):
    path: str = Field(description="local HF directory, 'hf:<id>' when online, or a packaged model name")
    task: Literal["text-classification"] = "text-classification"
    label_names: list[str] = Field(min_length=2)


class SplitSpec(Strict):
    path: str
    text_column: str = "sentence"
    label_column: str = "label"
    limit: int | None = Field(None, gt=0, description="first N rows only (quick runs)")


class DataSpec(Strict):
    eval: SplitSpec
    calibration: SplitSpec | None = None
    train: SplitSpec | None = None
    max_length: int = Field(128, ge=8, le=512)


class AccuracyGate(Strict):
    metric: Literal["accuracy", "macro_f1"] = "accuracy"
    max_drop: float = Field(1.0, ge=0, description="points (0-100) below the baseline, or a fraction if relative")
    relative: bool = False


class GatesSpec(Strict):
    accuracy: AccuracyGate = AccuracyGate()
    latency_p95_ms: float | None = Field(None, gt=0, description="at the target's vCPUs")
    size_mb: float | None = Field(None, gt=0, description="override the ceiling derived from the target")
    memory: bool = Field(True, description="peak resident memory must fit the target's memory setting")


class BenchmarkSpec(Strict):
    latency_runs: int = Field(200, ge=200, le=100_000)
    warmup_runs: int = Field(20, ge=1, le=10_000)
    # Accuracy is computed request by request, the way the handler serves them: dynamic int8 computes its
    # activation scales per call, so a batch of 32 scores differently from 32 single requests.
    batch_size: int = Field(1, ge=1, le=32, description="texts per request as your callers send them "
                                                        "(at most the handler's 32); latency is batch 1")


NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"  # one path component: names folders under artifacts/ and mlartifacts/


class TrackingSpec(Strict):
    experiment: str | None = Field(None, pattern=NAME_PATTERN, max_length=100)  # defaults to the pipeline name
    log_models: bool = True
    register_model: bool = Field(True, description="register the selected candidate in the MLflow model registry "
                                             "(a model named after the pipeline, alias lambda-candidate)")


class VariantSpec(Strict):
    """One group of variants: its own stages after the shared `stages` (a branch), a grid over stage fields
    (every combination is one variant), or both. Expanded and checked by lambdaslim.spec.variants."""

    name: str | None = Field(None, pattern=NAME_PATTERN, max_length=60)
    stages: list[StageConfig] = []
    grid: dict[str, dict[str, list[Any]]] | None = Field(None, description="stage name -> field -> values")


class PipelineSpec(Strict):
    name: str | None = Field(None, pattern=NAME_PATTERN, max_length=100)
    model: ModelSpec
    data: DataSpec
    target: str = Field(description="a name in configs/targets/ or a path to a target file")
    gates: GatesSpec = GatesSpec()
    benchmark: BenchmarkSpec = BenchmarkSpec()
    tracking: TrackingSpec = TrackingSpec()
    objective: Literal["latency", "size"] = "latency"
    artifacts_dir: str = "artifacts"
    stages: list[StageConfig] = Field(min_length=1)
    variants: list[VariantSpec] | None = Field(None, min_length=1, description="chains after the shared stages")
