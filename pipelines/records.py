"""Plain data about a candidate: one artifact, its metrics and its gate verdicts."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
import json
from pathlib import Path


@dataclass(frozen=True)
class Verdict:
    gate: str  # accuracy | latency_p95 | size | memory
    passed: bool
    value: float
    limit: float
    unit: str
    detail: str = ""

    @property
    def margin(self) -> float:
        """How far inside the limit (positive) or beyond it (negative), in `unit`."""
        return self.limit - self.value

    def to_dict(self) -> dict:
        return asdict(self) | {"margin": round(self.margin, 4)}

    @classmethod
    def from_dict(cls, d: dict) -> "Verdict":
        return cls(**{k: v for k, v in d.items() if k != "margin"})

    def describe(self) -> str:
        rel = "<=" if self.passed else ">"
        text = f"{self.gate}: {self.value:,.2f} {self.unit} {rel} {self.limit:,.2f} {self.unit}"
        if not self.passed:
            text += f" (over by {-self.margin:,.2f} {self.unit})"
        return text + (f"; {self.detail}" if self.detail else "")


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
    stage_key: str = ""  # full digest of everything that produced the artifact: the next stage's input key
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


def load_candidates(report_file: Path) -> list[Candidate]:
    """The candidate records of a run's report.json."""
    data = json.loads(Path(report_file).read_text())
    return [Candidate.from_dict(c) for c in data["candidates"]]
