"""Per-node quantization sensitivity: which layers cost accuracy when quantized.

For each node a quantizer would touch: the accuracy (and logit error vs the unquantized input) when
only that node stays fp32, and — for the diagnosis table — when only that node is quantized.
Each measurement quantizes a scratch copy, scores it, and deletes it; results are cached by digest.
"""
from __future__ import annotations

import csv
import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from lambdaslim.compressors import TECHNIQUES
from lambdaslim.compressors.base import Artifact
from lambdaslim.data.splits import Split
from lambdaslim.measure import benchmarks
from lambdaslim.run.stage_bench import StageBench
from lambdaslim.store.atomic import write_json_atomic
from lambdaslim.store.digest import digest_json


class SensitivityError(ValueError):
    """The stage cannot be analysed node by node (one line, for the CLI)."""


@dataclass
class NodeSensitivity:
    node: str
    only_fp32_accuracy: float  # everything quantized except this node
    only_fp32_logit_mse: float
    only_quantized_accuracy: float | None = None  # nothing quantized except this node
    only_quantized_logit_mse: float | None = None


def quantizable_nodes_fn(kind: str):
    """The node lister a quantizer declares when it registers (`register(..., nodes=...)`)."""
    fn = TECHNIQUES[kind].nodes
    if fn is None:
        raise SensitivityError(f"stage kind {kind!r} has no per-node quantization to analyse")
    return fn


def analyse(bench: StageBench, step, inp: Artifact, inp_key: str, split: Split, both_ways: bool) -> tuple[list[NodeSensitivity], dict]:
    """Rows sorted most-sensitive first (the node whose fp32 fallback recovers the most)."""
    nodes = quantizable_nodes_fn(step.kind)(inp, step.cfg)
    if not nodes:
        raise SensitivityError(f"stage {step.name!r} would quantize no node of {inp.path}")
    max_len, threads = bench.max_length, 1
    ref = benchmarks.predict_logits(inp, split.texts, max_len, 64, threads)
    work = bench.run_dir / "sensitivity" / f"{step.name}-{inp_key[:12]}"
    base_excluded = list(getattr(step.cfg, "exclude_nodes", []))

    def score(update: dict) -> tuple[float, float]:
        cfg = step.cfg.model_copy(update=update)
        key = digest_json({"split": split.texts[:3] + [len(split)], "cfg": cfg.model_dump(mode="json"),
                           "input": inp_key})
        cache = work / f"{key[:16]}.json"
        if cache.exists():
            d = json.loads(cache.read_text())
            return d["accuracy"], d["logit_mse"]
        scratch = work / f".scratch-{key[:16]}"
        shutil.rmtree(scratch, ignore_errors=True)
        artifact, _, _, _ = bench.execute(step, cfg, inp, inp_key, folder=scratch)
        logits = benchmarks.predict_logits(artifact, split.texts, max_len, 64, threads)
        shutil.rmtree(scratch, ignore_errors=True)
        acc = benchmarks.classification_metrics(split.labels, logits)["accuracy"]
        mse = float(np.mean((logits - ref) ** 2))
        write_json_atomic(cache, {"accuracy": acc, "logit_mse": mse})
        return acc, mse

    full_acc, full_mse = score({})
    rows = []
    for node in nodes:
        acc, mse = score({"exclude_nodes": base_excluded + [node]})
        row = NodeSensitivity(node, acc, mse)
        if both_ways:
            row.only_quantized_accuracy, row.only_quantized_logit_mse = score({"include_nodes": [node]})
        rows.append(row)
    rows.sort(key=lambda r: (r.only_fp32_logit_mse, -r.only_fp32_accuracy))
    fp32_acc = benchmarks.classification_metrics(split.labels, ref)["accuracy"]
    return rows, {"fp32_accuracy": fp32_acc, "quantized_accuracy": full_acc, "quantized_logit_mse": full_mse,
                  "nodes": len(nodes)}


def write_table(rows: list[NodeSensitivity], summary: dict, csv_path: Path, png_path: Path) -> None:
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    fp32, quant = summary["fp32_accuracy"], summary["quantized_accuracy"]
    with csv_path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["node", "acc_change_only_this_fp32", "acc_change_only_this_quantized",
                    "only_fp32_accuracy", "only_fp32_logit_mse", "only_quantized_accuracy", "only_quantized_logit_mse"])
        for r in rows:
            d = asdict(r)
            w.writerow([r.node, round(r.only_fp32_accuracy - quant, 4),
                        None if r.only_quantized_accuracy is None else round(r.only_quantized_accuracy - fp32, 4),
                        d["only_fp32_accuracy"], d["only_fp32_logit_mse"], d["only_quantized_accuracy"],
                        d["only_quantized_logit_mse"]])
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, max(3, 0.25 * len(rows))))
    y = np.arange(len(rows))
    ax.barh(y - 0.2, [r.only_fp32_accuracy - quant for r in rows], 0.4, label="only this node fp32 (vs all int8)")
    if rows and rows[0].only_quantized_accuracy is not None:
        ax.barh(y + 0.2, [r.only_quantized_accuracy - fp32 for r in rows], 0.4,
                label="only this node int8 (vs fp32)")
    ax.set_yticks(y, [r.node for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel("accuracy change (points)")
    ax.set_title(f"per-node sensitivity: fp32 {fp32:.2f}%, all quantized {quant:.2f}%")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(png_path, dpi=120)
    plt.close(fig)
