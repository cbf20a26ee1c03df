"""A candidate record: plain data about one artifact, its metrics and its gate verdicts."""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pipelines.gates import Verdict


@dataclass
class Candidate:
    stage: str  # display name: baseline, export_onnx, ...
    kind: str  # technique kind, or "baseline"
    index: int  # 0 = baseline, then stage order
    path: str
    format: str
    size_bytes: int
    config_digest: str
    config: dict
    metrics: dict = field(default_factory=dict)
    stage_info: dict = field(default_factory=dict)
    gates: list[Verdict] = field(default_factory=list)
    cached: bool = False  # the stage output came from an earlier run
    trial: int | None = None  # accuracy-aware fallback trial number (None for a stage's own result)
    config_key: str = ""  # full digest of (input, config, code): the next stage's input key
    variant: str | None = None  # the pipeline variant it belongs to; None: no variants, or shared by all of them

    @property
    def label(self) -> str:
        """Unique among a run's candidates: a stage name recurs in every variant."""
        return f"{self.variant}/{self.stage}" if self.variant else self.stage

    @property
    def passed(self) -> bool:
        return all(v.passed for v in self.gates)

    def failed_gates(self) -> list[Verdict]:
        return [v for v in self.gates if not v.passed]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["gates"] = [v.to_dict() for v in self.gates]
        d["passed"] = self.passed
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Candidate":
        d = {k: v for k, v in d.items() if k != "passed"}
        d["gates"] = [Verdict.from_dict(v) for v in d.get("gates", [])]
        return cls(**d)


def write_json_atomic(path: Path, data) -> None:
    """Readers never see a half-written file: write beside it, then rename over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def load_candidates(report_file: Path) -> list[Candidate]:
    data = json.loads(Path(report_file).read_text())
    return [Candidate.from_dict(c) for c in data["candidates"]]
