"""Benchmark for packaging (issue 5), on the reference pipeline's best candidate, measured in one run.

Targets: the zip <= 100 MB unzipped; init (import + model load + warm-up, in a fresh interpreter with
only the unpacked zip on its path) <= 0.8 s; init >= 8x faster than the torch+transformers handler of
the same fp32 model. Both handlers are started --rounds times, alternating (order rotated each round) so
machine noise hits them alike; the figures quoted are medians, the ratio the median of per-round ratios.

Run after `dvc repro compress`:  .venv/bin/python -m bench.bench_package [--rounds 5 --calls 200]
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
import zipfile
from collections import defaultdict
from pathlib import Path

from bench.checks import print_checks
from lambdaslim.data.splits import load_declared
from lambdaslim.packaging.invoke import invoke_package, invoke_torch_baseline, text_events
from lambdaslim.packaging.package import PackageOptions, baseline_model_dir, package
from lambdaslim.spec.load import load_pipeline

TARGET_UNZIPPED_MB, TARGET_INIT_S, TARGET_SPEEDUP = 100, 0.8, 8.0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pipeline", default="configs/pipelines/sst2-minilm.yaml")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--deps-from", choices=["pypi", "venv"], default="pypi")
    ap.add_argument("--candidate", help="another candidate directory (a stage output) instead of the run's best")
    args = ap.parse_args()

    p = load_pipeline(args.pipeline)
    best = Path(args.candidate) if args.candidate else p.run_dir / "best"
    if not (best / "model.onnx").is_file():
        print(f"no reference candidate at {best}: run `dvc repro compress` first", file=sys.stderr)
        return 2
    baseline = baseline_model_dir(p)
    memory = p.target.memory_mb
    with tempfile.TemporaryDirectory(prefix="bench-package-") as tmp:
        tmp = Path(tmp)
        result = package(best, PackageOptions(format="zip", deps_from=args.deps_from, calls=args.calls,
                                              pipeline=Path(args.pipeline), out=tmp / "package",
                                              metrics=tmp / "metrics.json", cost_csv=tmp / "cost.csv"))
        report = result.report
        task = tmp / "task"
        with zipfile.ZipFile(result.out / "function.zip") as zf:
            zf.extractall(task)
        sizes = _breakdown(json.loads((result.out / "manifest.json").read_text())["files"])
        events = text_events(load_declared(p.spec.data.eval, p.root, p.spec.model.label_names).texts[:20])
        inits = defaultdict(list)
        runners = {"package": lambda: invoke_package(task, events, memory, p.target.python, report["environment"]),
                   "torch": lambda: invoke_torch_baseline(baseline, events, memory, p.target.python)}
        names = list(runners)
        for r in range(args.rounds):
            for n in names[r % 2:] + names[: r % 2]:
                inits[n].append(runners[n]().init_ms)
    ratio = statistics.median(t / q for t, q in zip(inits["torch"], inits["package"]))
    pkg = report["invocation"]["package"]
    unzipped, zipped = report["package"]["unzipped_bytes"] / 1e6, report["package"]["zip_bytes"] / 1e6

    cpu = platform.processor() or platform.machine()
    stage = report["candidate"]["stage"] or best.name
    print(f"lambdaslim package benchmark — {time.strftime('%Y-%m-%d')}, {cpu}, "
          f"candidate {stage}, {args.rounds} alternating fresh-process rounds, "
          f"{args.calls} warm calls on SST-2 validation at {memory} MB")
    print(f"zip {zipped:.1f} MB zipped, {unzipped:.1f} MB unzipped: "
          + ", ".join(f"{k} {v / 1e6:.1f}" for k, v in sorted(sizes.items(), key=lambda kv: -kv[1])))
    print(f"{'handler':26} {'init ms (median)':>17} {'rounds':>30}")
    for n, label in [("package", f"package ({stage})"), ("torch", "torch+transformers fp32")]:
        print(f"{label:26} {statistics.median(inits[n]):>17.0f} {' '.join(f'{x:.0f}' for x in inits[n]):>30}")
    print(f"package warm p50 {pkg['p50_ms']:.2f} ms, p95 {pkg['p95_ms']:.2f} ms, peak RSS {pkg['peak_rss_mb']:.0f} MB; "
          f"torch warm p50 {report['invocation']['torch_baseline']['p50_ms']:.2f} ms, "
          f"peak RSS {report['invocation']['torch_baseline']['peak_rss_mb']:.0f} MB")
    ric = report["invocation"]["awslambdaric"]
    print(f"through awslambdaric: process start to first `next` {ric['process_init_ms']:.0f} ms, "
          f"p50 {ric['p50_ms']:.2f} ms over {ric['calls']} calls, {ric['ok']} ok")
    rec = (report.get("cost") or {}).get("recommended")
    if rec:
        print(f"recommended memory {rec['memory_mb']} MB x86_64: ${rec['cost_per_1m_usd']:.2f} per 1M invocations")
    print(f"deployable on the python{p.target.python} managed runtime: "
          f"{'yes' if report['deployable'] else 'NO — ' + report['problems'][0]}")
    checks = [
        ("zip unzipped size (MB)", unzipped, "<=", TARGET_UNZIPPED_MB),
        ("init: import + load + warm-up (s)", statistics.median(inits["package"]) / 1000, "<=", TARGET_INIT_S),
        ("init speed-up vs torch+transformers (x)", ratio, ">=", TARGET_SPEEDUP),
    ]
    return 0 if print_checks(checks) else 1


def _breakdown(files: list[dict]) -> dict[str, int]:
    """Bytes per top-level entry of the package (numpy.libs counted with numpy)."""
    out: dict[str, int] = defaultdict(int)
    for f in files:
        top = f["path"].split("/")[0].removesuffix(".libs")
        out[top if "/" in f["path"] else "(top-level files)"] += f["size"]
    small = {k: v for k, v in out.items() if v < 1e6}
    big = {k: v for k, v in out.items() if v >= 1e6}
    return big | ({"other": sum(small.values())} if small else {})


if __name__ == "__main__":
    raise SystemExit(main())
