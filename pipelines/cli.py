"""lambdaslim command line.

Exit codes: 0 done (a candidate passed every gate); 1 no candidate passed (all recorded);
2 bad input (one line names the file, the YAML path and the problem); 3 a stage failed for real.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

EXIT_OK, EXIT_NO_CANDIDATE, EXIT_BAD_INPUT, EXIT_STAGE_ERROR = 0, 1, 2, 3


def _err(msg: str) -> None:
    print(f"lambdaslim: error: {msg}", file=sys.stderr)


def cmd_validate(args) -> int:
    from lambdaslim.spec.load import load_pipeline
    from lambdaslim.spec.pipeline import stage_names
    from lambdaslim.aws.budgets import budgets_for

    p = load_pipeline(args.file)
    print(f"{args.file}: ok — pipeline {p.name!r}, {len(p.spec.stages)} stage(s): {' -> '.join(p.stage_names())}")
    for v in p.variants:
        print(f"variant {v.name}: {' -> '.join(stage_names(v.stages))}")
    print(f"target {p.target.name}: {p.target.memory_mb} MB {p.target.architecture} {p.target.package_type}; "
          f"{budgets_for(p.target, 'onnx').describe()}")
    return EXIT_OK


def cmd_run(args) -> int:
    from lambdaslim.select.table import candidate_table
    from lambdaslim.run.runner import run_pipeline

    result = run_pipeline(args.file)
    best = result.best.label if result.best else None
    print()
    print(candidate_table(result.candidates, best))
    if result.best is None:
        note = f"{len(result.candidates)} recorded in {result.run_dir / 'report.json'} and MLflow run " \
               f"{result.parent_run_id}"
        if args.allow_no_winner:  # dvc repro: a recorded result, not an error that stops the other pipelines
            print(f"\nno candidate passed every gate; {note}")
            return EXIT_OK
        _err(f"no candidate passed every gate; {note}")
        return EXIT_NO_CANDIDATE
    print(f"\nbest: {best} -> {result.run_dir / 'best'}  (MLflow parent run {result.parent_run_id})")
    return EXIT_OK


def cmd_report(args) -> int:
    import json

    from lambdaslim.records import Candidate
    from lambdaslim.select.table import candidate_table

    from lambdaslim.spec.errors import SpecError

    report = Path(args.run_dir) / "report.json"
    if not report.is_file() and (Path(args.run_dir) / "selection.json").is_file():
        return _print_cross_selection(Path(args.run_dir) / "selection.json")
    if not report.is_file():
        raise SpecError(f"{report}: no such file (is {args.run_dir} a run directory?)")
    data = json.loads(report.read_text())
    cands = [Candidate.from_dict(c) for c in data["candidates"]]
    print(f"pipeline {data['pipeline']} (MLflow run {data['mlflow_run_id']})")
    print(candidate_table(cands, data["best"]))
    print()
    print("\n".join(run_selection_lines(data, cands)))
    return EXIT_OK if data["best"] else EXIT_NO_CANDIDATE


def run_selection_lines(data: dict, cands) -> list[str]:
    """Why the winner won, from the run's `selection` section."""
    from lambdaslim.select.pareto import describe

    sel = data["selection"]
    lines = describe(sel)
    if sel.get("registered"):
        r = sel["registered"]
        lines.append(f"registered: {r['name']} version {r['version']} (alias {r['alias']})")
    return lines


def _print_cross_selection(file: Path) -> int:
    """`lambdaslim report artifacts/selected`: the selection `lambdaslim select` wrote."""
    import json

    from lambdaslim.select.pareto import describe

    sel = json.loads(file.read_text())
    print(f"selection across {', '.join(r['pipeline'] for r in sel['runs'])} (MLflow run {sel['mlflow_run_id']})")
    print("\n".join(describe(sel)))
    print(f"baselines: {sel['baselines']['note']}")
    return EXIT_OK if sel["winner"] else EXIT_NO_CANDIDATE


def cmd_select(args) -> int:
    from lambdaslim.select.across_runs import select_runs
    from lambdaslim.select.pareto import describe

    sel = select_runs(args.run_dirs, args.out, objective=args.objective, model_name=args.model_name,
                      experiment=args.experiment)
    print("\n".join(describe(sel)))
    print(f"baselines: {sel['baselines']['note']}")
    if sel["winner"] is None:
        _err(f"no candidate of {len(sel['runs'])} run(s) passed every gate; table in {Path(args.out) / 'pareto.md'}")
        return EXIT_NO_CANDIDATE
    reg = sel["registered"]
    print(f"best: {sel['winner']['label']} -> {Path(args.out) / 'best'}"
          + (f"; registered {reg['name']} version {reg['version']} (alias {reg['alias']})" if reg else ""))
    return EXIT_OK


def cmd_sensitivity(args) -> int:
    from lambdaslim.run.runner import pipeline_tracker
    from lambdaslim.run.session import Session
    from lambdaslim.run.sensitivity import SensitivityError, analyse, write_table

    s = Session.open(args.file)
    step = next((st for st in s.steps()[1:] if st.name == args.stage), None)
    if step is None:
        raise SensitivityError(f"{args.file}: no stage named {args.stage!r} (stages: {', '.join(s.p.stage_names())})")
    print(f"sensitivity of {step.name} ({step.kind}) on the evaluation split ({len(s.eval_split)} rows) ...")
    inp, inp_key = s.materialize(step.index)
    try:
        rows, summary = analyse(s, step, inp, inp_key, s.eval_split, both_ways=True)
    finally:
        s.close()
    out = s.run_dir / "sensitivity"
    csv_path, png_path = out / f"{step.name}.csv", out / f"{step.name}.png"
    write_table(rows, summary, csv_path, png_path)
    run_id = pipeline_tracker(s.p).log_report(f"sensitivity-{step.name}", {"stage": step.name, "kind": step.kind},
                                          summary, [csv_path, png_path])
    print(f"fp32 {summary['fp32_accuracy']:.2f}%  all quantized {summary['quantized_accuracy']:.2f}%  "
          f"({summary['nodes']} nodes)")
    print(f"{'node':48} {'only fp32':>10} {'only int8':>10}")
    for r in rows:
        print(f"{r.node[:48]:48} {r.only_fp32_accuracy - summary['quantized_accuracy']:>+10.2f} "
              f"{r.only_quantized_accuracy - summary['fp32_accuracy']:>+10.2f}")
    print(f"table {csv_path}, plot {png_path}, MLflow run {run_id}")
    return EXIT_OK


def cmd_train_baseline(args) -> int:
    from lambdaslim.baseline import load_config, train

    train(load_config(args.params))
    return EXIT_OK


def cmd_package(args) -> int:
    from pydantic import ValidationError

    from lambdaslim.packaging.package import PackageOptions, package
    from lambdaslim.spec.errors import SpecError

    try:
        opts = PackageOptions(format=args.format, arch=args.arch, direct_upload=args.direct_upload or None,
                              deps_from=args.deps_from, calls=args.calls, ric_calls=args.ric_calls,
                              torch_baseline=not args.no_torch_baseline, pipeline=args.pipeline, out=args.out,
                              metrics=args.metrics, cost_csv=args.cost_csv, registry_model=args.registry_model)
    except ValidationError as e:
        err = e.errors()[0]
        raise SpecError(f"package: --{str(err['loc'][0]).replace('_', '-')}: {err['msg']}") from None
    result = package(args.best_dir, opts)
    r = result.report
    print(f"\n{r['format']} -> {result.out}  ({r['reason']})")
    m = r["invocation"].get("package")
    if m:
        print(f"init {m['init_ms']:.0f} ms | warm p50 {m['p50_ms']:.2f} ms p95 {m['p95_ms']:.2f} ms | "
              f"peak RSS {m['peak_rss_mb']:.0f} MB | torch+transformers init "
              f"{r['invocation'].get('torch_baseline', {}).get('init_ms', float('nan')):.0f} ms")
    rec = (r.get("cost") or {}).get("recommended")
    if rec:
        print(f"recommended memory: {rec['memory_mb']} MB {rec['arch']}, ${rec['cost_per_1m_usd']:.2f} "
              f"per 1M invocations (p95 {rec['latency_p95_ms']:.1f} ms)")
    elif r.get("cost"):
        print("no memory setting from 512 to 3,008 MB meets the latency gate")
    if not result.deployable:
        _err(f"the {r['format']} will not import on Lambda: {r['problems'][0]}; use --format container "
             f"(an Amazon Linux 2023 image) or a python 3.12+ target")
        return EXIT_NO_CANDIDATE
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="lambdaslim", description="Shrink models until they serve well on AWS Lambda.")
    sub = ap.add_subparsers(dest="command", required=True)
    for name, fn, arg, helptext in [
        ("run", cmd_run, "file", "run a pipeline file: every stage benchmarked, gated and tracked"),
        ("validate", cmd_validate, "file", "check a pipeline file without running anything"),
        ("report", cmd_report, "run_dir", "the candidate table and why the winner won, of a run directory "
                                          "(artifacts/<pipeline>) or of `lambdaslim select`'s output"),
    ]:
        sp = sub.add_parser(name, help=helptext)
        sp.add_argument(arg)
        sp.set_defaults(fn=fn)
    sub.choices["run"].add_argument("--allow-no-winner", action="store_true",
                                    help="exit 0 when no candidate passes every gate (recorded in metrics.json; "
                                         "for dvc repro, so one pipeline cannot stop the others)")
    sp = sub.add_parser("sensitivity", help="per-layer quantization sensitivity table and plot for one stage")
    sp.add_argument("file")
    sp.add_argument("--stage", required=True, help="stage name (see `lambdaslim validate FILE`)")
    sp.set_defaults(fn=cmd_sensitivity)
    sp = sub.add_parser("train-baseline", help="fine-tune the baseline classifier (params.yaml: train_baseline)")
    sp.add_argument("--params", default="params.yaml")
    sp.set_defaults(fn=cmd_train_baseline)
    sp = sub.add_parser("package", help="package the best candidate for Lambda (zip or container image), invoke it "
                                        "as Lambda would, estimate cost and recommend a memory setting")
    sp.add_argument("best_dir", help="artifacts/<pipeline>/best")
    sp.add_argument("--format", choices=["zip", "container", "auto"], default="auto")
    sp.add_argument("--arch", choices=["x86_64", "arm64"], help="default: the pipeline target's")
    sp.add_argument("--direct-upload", action="store_true", help="the zip is uploaded without S3 (50 MB zipped)")
    sp.add_argument("--pipeline", help="pipeline file (default: configs/pipelines/<run dir name>.yaml)")
    sp.add_argument("--deps-from", choices=["pypi", "venv"], default="pypi",
                    help="pypi: wheels for the Lambda platform; venv: copy this venv's (same Python and arch only)")
    sp.add_argument("--calls", type=int, default=200, help="warm invocations over evaluation sentences")
    sp.add_argument("--ric-calls", type=int, default=50, help="invocations through awslambdaric (0 to skip)")
    sp.add_argument("--no-torch-baseline", action="store_true", help="skip the torch+transformers handler")
    sp.add_argument("--out", help="package directory (default: <run dir>/package)")
    sp.add_argument("--metrics", help="metrics file (default: <run dir>/package-metrics.json)")
    sp.add_argument("--cost-csv", help="cost table (default: <run dir>/package-cost.csv)")
    sp.add_argument("--registry-model", metavar="NAME",
                    help="attach the package to the version of registered model NAME that holds this candidate")
    sp.set_defaults(fn=cmd_package)
    sp = sub.add_parser("select", help="the best candidate across several runs: Pareto frontier, why it won, "
                                       "copied to OUT/best and registered in the MLflow model registry")
    sp.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="artifacts/<pipeline> of each run")
    sp.add_argument("--out", default="artifacts/selected")
    sp.add_argument("--objective", choices=["latency", "size"], help="default: the runs' own (they must agree)")
    sp.add_argument("--model-name", default="lambdaslim-selected", help="registered model the winner is added to")
    sp.add_argument("--experiment", default="lambdaslim-selection", help="MLflow experiment of the selection run")
    sp.set_defaults(fn=cmd_select)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from lambdaslim.compressors.base import StageError
    from lambdaslim.data.splits import DataError
    from lambdaslim.run.sensitivity import SensitivityError
    from lambdaslim.spec.errors import SpecError

    try:
        code = args.fn(args)
        sys.stdout.flush()  # inside the try: a reader that left surfaces here, not at interpreter exit
        return code
    except (SpecError, DataError, SensitivityError) as e:
        _err(str(e))
        return EXIT_BAD_INPUT
    except StageError as e:
        _err(str(e))
        return EXIT_STAGE_ERROR
    except BrokenPipeError:  # `lambdaslim report ... | head`: the reader left; nothing is wrong with the run
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at interpreter exit
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
