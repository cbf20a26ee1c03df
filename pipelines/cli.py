"""lambdaslim command line.

Exit codes: 0 done (a candidate passed every gate); 1 no candidate passed (all recorded);
2 bad input (one line names the file, the YAML path and the problem); 3 a stage failed for real.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_OK, EXIT_NO_CANDIDATE, EXIT_BAD_INPUT, EXIT_STAGE_ERROR = 0, 1, 2, 3


def _err(msg: str) -> None:
    print(f"lambdaslim: error: {msg}", file=sys.stderr)


def cmd_validate(args) -> int:
    from pipelines.spec import load_pipeline
    from pipelines.targets import budgets_for

    p = load_pipeline(args.file)
    print(f"{args.file}: ok — pipeline {p.name!r}, {len(p.spec.stages)} stage(s): {' -> '.join(p.stage_names())}")
    print(f"target {p.target.name}: {p.target.memory_mb} MB {p.target.architecture} {p.target.package_type}; "
          f"{budgets_for(p.target, 'onnx').describe()}")
    return EXIT_OK


def cmd_run(args) -> int:
    from pipelines.report import candidate_table
    from pipelines.runner import run_pipeline

    result = run_pipeline(args.file)
    best = result.best.stage if result.best else None
    print()
    print(candidate_table(result.candidates, best))
    if result.best is None:
        _err(f"no candidate passed every gate; {len(result.candidates)} recorded in {result.run_dir / 'report.json'} "
             f"and MLflow run {result.parent_run_id}")
        return EXIT_NO_CANDIDATE
    print(f"\nbest: {best} -> {result.run_dir / 'best'}  (MLflow parent run {result.parent_run_id})")
    return EXIT_OK


def cmd_report(args) -> int:
    import json

    from pipelines.records import Candidate
    from pipelines.report import candidate_table

    from pipelines.spec import SpecError

    report = Path(args.run_dir) / "report.json"
    if not report.is_file():
        raise SpecError(f"{report}: no such file (is {args.run_dir} a run directory?)")
    data = json.loads(report.read_text())
    cands = [Candidate.from_dict(c) for c in data["candidates"]]
    print(f"pipeline {data['pipeline']} (MLflow run {data['mlflow_run_id']})")
    print(candidate_table(cands, data["best"]))
    return EXIT_OK if data["best"] else EXIT_NO_CANDIDATE


def cmd_train_baseline(args) -> int:
    from pipelines.train_baseline import load_config, train

    train(load_config(args.params))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="lambdaslim", description="Shrink models until they serve well on AWS Lambda.")
    sub = ap.add_subparsers(dest="command", required=True)
    for name, fn, arg, helptext in [
        ("run", cmd_run, "file", "run a pipeline file: every stage benchmarked, gated and tracked"),
        ("validate", cmd_validate, "file", "check a pipeline file without running anything"),
        ("report", cmd_report, "run_dir", "print the candidate table of a run directory (artifacts/<pipeline>)"),
    ]:
        sp = sub.add_parser(name, help=helptext)
        sp.add_argument(arg)
        sp.set_defaults(fn=fn)
    sp = sub.add_parser("train-baseline", help="fine-tune the baseline classifier (params.yaml: train_baseline)")
    sp.add_argument("--params", default="params.yaml")
    sp.set_defaults(fn=cmd_train_baseline)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from compressors.base import StageError
    from pipelines.data import DataError
    from pipelines.spec import SpecError

    try:
        return args.fn(args)
    except (SpecError, DataError) as e:
        _err(str(e))
        return EXIT_BAD_INPUT
    except StageError as e:
        _err(str(e))
        return EXIT_STAGE_ERROR


if __name__ == "__main__":
    sys.exit(main())
