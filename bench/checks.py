"""What every bench script ends with: measured ratios against their targets, PASS or MISS."""
from __future__ import annotations


def print_checks(rows: list[tuple[str, float, str, float]]) -> bool:
    """rows: (label, measured value, '<=' or '>=', target). Returns True when every target is met."""
    ok = True
    width = max(len(r[0]) for r in rows)
    for label, value, op, target in rows:
        passed = value <= target if op == "<=" else value >= target
        ok &= passed
        print(f"{label:{width}} {value:8.3f}  target {op} {target}  {'PASS' if passed else 'MISS'}")
    return ok
