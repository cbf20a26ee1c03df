"""The Pareto plot: accuracy vs p95 latency, marker area by size, frontier connected, selected ringed,
failed gates drawn as x. Drawn on an Agg canvas of its own, so a notebook's backend is left alone."""
from __future__ import annotations

from pathlib import Path
from lambdaslim.store.atomic import atomic_path

LABEL_ALL = 8  # up to this many candidates every point is named


def plot_pareto(report: dict, path: Path, title: str) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = report["candidates"]
    largest = max((r["size_mb"] for r in rows), default=1.0) or 1.0
    area = lambda rs: [40 + 460 * r["size_mb"] / largest for r in rs]  # noqa: E731
    xy = lambda rs: ([r["latency_p95_ms"] for r in rs], [r["accuracy"] for r in rs])  # noqa: E731
    fig = Figure(figsize=(8, 5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    front = sorted((r for r in rows if r["on_frontier"]), key=lambda r: (r["latency_p95_ms"], -r["accuracy"]))
    if front:
        ax.plot(*xy(front), "--", color="tab:gray", lw=1, label="Pareto frontier (accuracy up, p95 down, size down)")
    for rs, style in (([r for r in rows if r["passed"]], dict(marker="o", color="tab:blue", label="passed every gate")),
                      ([r for r in rows if not r["passed"]], dict(marker="X", color="tab:red", label="failed a gate"))):
        if rs:
            ax.scatter(*xy(rs), s=area(rs), alpha=0.55, edgecolors="black", linewidths=0.5, **style)
    chosen = [r for r in rows if r["selected"]]
    if chosen:
        ax.scatter(*xy(chosen), s=[a * 2.2 for a in area(chosen)], facecolors="none", edgecolors="tab:green",
                   linewidths=2.5, label=f"selected ({report['objective']})")
    # Many candidates: name only the frontier and the winner (the table names the rest), or labels overprint.
    named = rows if len(rows) <= LABEL_ALL else [r for r in rows if r["on_frontier"] or r["selected"]]
    for r, dy in zip(named, _label_offsets(named)):
        tag = r["label"] + ("" if r["on_frontier"] else " (dominated)")
        ax.annotate(tag, (r["latency_p95_ms"], r["accuracy"]), textcoords="offset points", xytext=(6, dy), fontsize=7)
    ax.set_xlabel("p95 latency (ms, batch 1 at the target's vCPUs)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title, fontsize=10)
    unnamed = f"; {len(rows) - len(named)} dominated candidates unlabelled (see pareto.csv)" if len(named) < len(rows) else ""
    ax.text(0.99, 0.01, f"marker area ~ size (largest {largest:,.1f} MB){unnamed}", transform=ax.transAxes, ha="right",
            va="bottom", fontsize=7, color="dimgray")
    ax.legend(handles=_legend(ax, report["objective"], bool(front), bool(chosen)), fontsize=7, loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:  # readers never see a half-written image
        fig.savefig(tmp, format="png", dpi=110)
    return path


def _label_offsets(rows: list[dict]) -> list[int]:
    """Vertical label offsets (points): labels of points that (nearly) coincide are stacked, not overprinted."""
    xs, ys = [r["latency_p95_ms"] for r in rows], [r["accuracy"] for r in rows]
    span_x, span_y = (max(xs) - min(xs)) or 1.0, (max(ys) - min(ys)) or 1.0
    offsets: list[int] = []
    for i, r in enumerate(rows):
        near = sum(abs(xs[j] - xs[i]) / span_x < 0.04 and abs(ys[j] - ys[i]) / span_y < 0.04 for j in range(i))
        offsets.append(6 - 10 * near)
    return offsets


def _legend(ax, objective: str, front: bool, chosen: bool) -> list:
    """Fixed-size legend markers: the plotted ones vary with size."""
    from matplotlib.lines import Line2D

    dot = dict(ls="", markersize=8, markeredgecolor="black", markeredgewidth=0.5, alpha=0.55)
    handles = [Line2D([], [], marker="o", color="tab:blue", label="passed every gate", **dot),
               Line2D([], [], marker="X", color="tab:red", label="failed a gate", **dot)]
    if front:
        handles.insert(0, Line2D([], [], ls="--", color="tab:gray", lw=1,
                                 label="Pareto frontier (accuracy up, p95 down, size down)"))
    if chosen:
        handles.append(Line2D([], [], ls="", marker="o", markersize=11, markerfacecolor="none",
                              markeredgecolor="tab:green", markeredgewidth=2.5, label=f"selected ({objective})"))
    return handles
