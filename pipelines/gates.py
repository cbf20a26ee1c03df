"""Gates: pure functions from measured figures and limits to a verdict. A failed gate is data."""
from __future__ import annotations

from dataclasses import asdict, dataclass


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


def ceiling_gate(gate: str, value: float, limit: float, unit: str, detail: str = "") -> Verdict:
    value, limit = round(value, 4), round(limit, 4)  # decide on what is shown, so the text never contradicts
    return Verdict(gate, value <= limit, value, limit, unit, detail)


def accuracy_gate(value: float, baseline: float, max_drop: float, relative: bool, metric: str = "accuracy") -> Verdict:
    """Degradation vs the baseline, in points (0-100 scale) or as a fraction of the baseline."""
    drop = baseline - value
    if relative:
        allowed = baseline * max_drop
        detail = f"{metric} {value:.2f} vs baseline {baseline:.2f}, at most {100 * max_drop:g}% relative drop"
    else:
        allowed = max_drop
        detail = f"{metric} {value:.2f} vs baseline {baseline:.2f}"
    return Verdict("accuracy", drop <= allowed + 1e-9, round(drop, 4), round(allowed, 4), "pt drop", detail)


def all_passed(verdicts: list[Verdict]) -> bool:
    return all(v.passed for v in verdicts)
