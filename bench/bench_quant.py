"""Benchmark for quantization that keeps accuracy (issue 3), on the reference model at 1 vCPU.

1. Static int8 (pipeline sst2-minilm-static) vs dynamic int8 (sst2-minilm): accuracy drop vs the fp32
   baseline, and p50 speed-up of static over dynamic (target: drop <= 1.0 pt, >= 1.15x).
2. The recipe a user would otherwise pick — Optimum's ORTOptimizer (O2) then ORTQuantizer dynamic int8
   (AutoQuantizationConfig.avx2) — on the same fine-tuned model, measured the same way in the same
   rounds: lambdaslim's best candidate must be at least as accurate and at least as fast.
3. The fallback (pipeline sst2-minilm-fallback): per-tensor dynamic int8 fails a 0.3-point gate; the
   record shows the nodes kept in fp32 and each trial's accuracy.

Run after `dvc repro` (or `lambdaslim run` of the three pipelines):
    .venv/bin/python -m bench.bench_quant [--rounds 7 --calls 200]
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path


from bench.checks import print_checks
from lambdaslim.compressors import Artifact
from bench.rounds import alternating_p50, median_ratio
from lambdaslim.measure.benchmarks import measure_accuracy
from lambdaslim.spec.load import load_pipeline


def report(pipeline: str) -> dict:
    """The pipeline's last run; runs it first when it has never run (stages already done are reused)."""
    file = f"configs/pipelines/{pipeline}.yaml"
    p = load_pipeline(file)
    if not (p.run_dir / "report.json").exists():
        from lambdaslim.run.runner import run_pipeline

        run_pipeline(file)
    return json.loads((p.run_dir / "report.json").read_text())


def optimum_recipe(model_dir: Path, work: Path) -> tuple[Artifact, str]:
    """ORTOptimizer O2 -> ORTQuantizer avx2 dynamic; if that fails as optimum#2186 reports, what a
    user does next: quantize the plain export instead."""
    from optimum.onnxruntime import ORTModelForSequenceClassification, ORTOptimizer, ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig, OptimizationConfig
    from transformers import AutoTokenizer

    exported = ORTModelForSequenceClassification.from_pretrained(model_dir, export=True)
    exported.save_pretrained(work / "export")
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(work / "export")  # the recipe's users keep it beside
    ORTOptimizer.from_pretrained(exported).optimize(OptimizationConfig(optimization_level=2), work / "o2")
    qconfig = AutoQuantizationConfig.avx2(is_static=False)
    try:
        q = ORTQuantizer.from_pretrained(work / "o2", file_name="model_optimized.onnx")
        q.quantize(qconfig, work / "o2-int8")
        produced, note = work / "o2-int8" / "model_optimized_quantized.onnx", "O2 + avx2 dynamic int8"
    except (ValueError, KeyError, RuntimeError) as e:  # optimum#2186: "Unable to find data type for weight_name"
        note = f"O2 + int8 failed ({str(e).splitlines()[0][:80]}); fell back to int8 of the plain export"
        ORTQuantizer.from_pretrained(work / "export").quantize(qconfig, work / "int8")
        produced = work / "int8" / "model_quantized.onnx"
    (produced.parent / "model.onnx").write_bytes(produced.read_bytes())
    for f in (work / "export").iterdir():  # tokenizer and config beside the model
        if f.suffix != ".onnx" and f.is_file() and not (produced.parent / f.name).exists():
            (produced.parent / f.name).write_bytes(f.read_bytes())
    return Artifact(produced.parent, "onnx"), note


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=200)
    args = ap.parse_args()

    dyn_r, static_r, fb_r = report("sst2-minilm"), report("sst2-minilm-static"), report("sst2-minilm-fallback")
    p = load_pipeline("configs/pipelines/sst2-minilm.yaml")
    from lambdaslim.data.splits import load_declared

    ev = load_declared(p.spec.data.eval, p.root, p.spec.model.label_names)
    pick = lambda r, kind: next(c for c in r["candidates"] if c["kind"] == kind)  # noqa: E731
    base = pick(dyn_r, "baseline")
    dynamic, static = pick(dyn_r, "quantize_dynamic"), pick(static_r, "quantize_static")
    best = next(c for c in dyn_r["candidates"] if c["stage"] == dyn_r["best"])
    with tempfile.TemporaryDirectory() as tmp:
        recipe, note = optimum_recipe(p.resolve(p.spec.model.path), Path(tmp))
        recipe_acc = measure_accuracy(recipe, ev, p.spec.data.max_length, p.spec.benchmark.batch_size, 1)["accuracy"]
        arts = {"dynamic_int8": Artifact(Path(dynamic["path"]), "onnx"),
                "static_int8": Artifact(Path(static["path"]), "onnx"),
                "lambdaslim_best": Artifact(Path(best["path"]), best["format"]), "optimum_recipe": recipe}
        p50 = alternating_p50(arts, ev.texts, p.spec.data.max_length, args.rounds, args.calls)
        names = list(arts)
    ratio = lambda a, b: median_ratio(p50, a, b)  # noqa: E731
    acc = {"dynamic_int8": dynamic["metrics"]["accuracy"], "static_int8": static["metrics"]["accuracy"],
           "lambdaslim_best": best["metrics"]["accuracy"], "optimum_recipe": recipe_acc}
    b = base["metrics"]["accuracy"]
    print(f"lambdaslim quantization benchmark — {time.strftime('%Y-%m-%d')}, 1 thread, {args.rounds} rounds x "
          f"{args.calls} batch-1 calls; fp32 PyTorch baseline accuracy {b:.2f}%")
    print(f"{'variant':16} {'accuracy %':>10} {'drop pt':>8} {'p50 ms':>8}")
    for n in names:
        print(f"{n:16} {acc[n]:>10.2f} {b - acc[n]:>8.2f} {statistics.median(p50[n]):>8.2f}")
    print(f"optimum recipe: {note}")
    print(f"lambdaslim best = {best['stage']} ({dyn_r['best']})")
    rows = [("static int8 drop vs fp32 (pt)", b - acc["static_int8"], "<=", 1.0),
            ("static / dynamic p50 speed-up (x)", ratio("dynamic_int8", "static_int8"), ">=", 1.15),
            ("best - optimum recipe accuracy (pt)", acc["lambdaslim_best"] - acc["optimum_recipe"], ">=", 0.0),
            ("best / optimum recipe p50 speed-up (x)", ratio("optimum_recipe", "lambdaslim_best"), ">=", 1.0)]
    fb = pick(fb_r, "quantize_dynamic")
    info = fb["stage_info"]
    print(f"fallback: per-tensor dynamic int8 {info.get('fallback_initial_accuracy', fb['metrics']['accuracy']):.2f}% "
          f"-> {fb['metrics']['accuracy']:.2f}% after {len(info.get('fallback_trials', []))} trial(s); gate "
          f"{'PASS' if fb['passed'] else 'FAIL'}; kept fp32: {', '.join(info.get('fallback_excluded_nodes', [])) or '-'}")
    rows.append(("fallback passes the 0.3 pt gate", float(fb["passed"]), ">=", 1.0))
    return 0 if print_checks(rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
