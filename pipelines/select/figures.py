"""The figures candidates are judged on, and the objectives that order them."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from lambdaslim.records import Candidate


@dataclass(frozen=True)
class Figure:
    """One figure a candidate is judged on, and how a difference in it is said."""

    name: str
    unit: str
    worse: str  # "slower at p95 by 3 ms"
    better: str  # "faster at p95 by 3 ms"
    higher_is_better: bool
    digits: int  # compared at this precision, so a difference nobody can see never decides
    value: Callable[[Candidate], float]
    noise: Callable[[Candidate], float] = lambda c: 0.0  # how much of the figure is measurement noise

    def cost(self, c: Candidate) -> float:
        v = round(self.value(c), self.digits)
        return -v if self.higher_is_better else v

    def tolerance(self, a: Candidate, b: Candidate) -> float:
        """Two candidates closer than this on the figure are tied: the difference is inside their noise."""
        return round(max(self.noise(a), self.noise(b)), self.digits)

    def tied(self, a: Candidate, b: Candidate) -> bool:
        return abs(self.cost(a) - self.cost(b)) <= self.tolerance(a, b)


ACCURACY = Figure("accuracy", "pt", "less accurate", "more accurate", True, 4, lambda c: c.metrics["accuracy"])
# A latency difference below this share of the figure is never taken as real (stated default; the measured
# spread across interleaved rounds, `latency_p95_spread_ms`, widens it when the rounds disagree more).
LATENCY_TIE_RELATIVE = 0.05


def _latency_noise(c: Candidate) -> float:
    m = c.metrics
    return max(LATENCY_TIE_RELATIVE * m["latency_p95_ms"], m.get("latency_p95_spread_ms", 0.0))


P95 = Figure("latency_p95_ms", "ms", "slower at p95", "faster at p95", False, 4,
             lambda c: c.metrics["latency_p95_ms"], _latency_noise)
SIZE = Figure("size_mb", "MB", "larger", "smaller", False, 6, lambda c: c.size_bytes / 1e6)

# Passing candidates are ranked by these figures in turn: those within noise of the best on the first figure
# are ranked by the second, and so on; accuracy decides last, so the selected candidate is never dominated
# by another passing one (it is always on the Pareto frontier).
OBJECTIVE_FIGURES = {"latency": (P95, SIZE, ACCURACY), "size": (SIZE, P95, ACCURACY)}
OBJECTIVES = tuple(OBJECTIVE_FIGURES)


def exact_order(c: Candidate, objective: str) -> tuple:
    return tuple(f.cost(c) for f in OBJECTIVE_FIGURES[objective])


def rank(cands: list[Candidate], objective: str) -> list[Candidate]:
    """Best first: on each figure in turn, the candidates tied (within noise) with the best go on to the
    next figure; the rest follow, ranked the same way."""
    if not cands:
        return []
    pool = sorted(cands, key=lambda c: exact_order(c, objective))
    for f in OBJECTIVE_FIGURES[objective]:
        lead = min(pool, key=f.cost)
        pool = [c for c in pool if f.tied(c, lead) or c is lead]
    first = min(pool, key=lambda c: exact_order(c, objective))
    return [first] + rank([c for c in cands if c is not first], objective)
