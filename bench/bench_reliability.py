"""Reliability figures (issue 7), each from real runs on a tiny model built here (no hub, no mocks):

1. bad files refused / total: every file of tests/pipelines/bad_pipelines/ and bad_targets/ given to a real
   `lambdaslim run` process in a fresh tiny project: refused = exit 2, one stderr line naming the file,
   nothing on stdout, no traceback, nothing written; plus N seeded mutants of valid pipeline and target
   files, judged the same way in-process (valid or refused, nothing else).
2. fuzz events sent / crashes: generated events (lambdaslim.testing.fuzz: fuzz_events) sent to the
   packaged handler, 1,000 per fresh interpreter; a crash is an interpreter that dies or an event whose
   handler call raises. Good events must get the right labels, bad ones a 4xx with a JSON error.
3. kill-and-resume trials / identical results: `lambdaslim run` killed with SIGKILL after each progress line
   (and after seeded random delays past some), then run again; identical = candidate records and the
   selection equal to an uninterrupted run's, timings aside. Also counted: MLflow left consistent (no run
   RUNNING; the killed process's run, if still open, closed as KILLED and linked from the resumed run) and
   nothing half-written left in the stage store or the run directory.
4. concurrent runs / lost runs: `lambdaslim run` processes started together on one sqlite MLflow store and
   one artifact directory (two pipelines; the same pipeline twice; three at once); a lost run is a process
   that failed, a parent or stage run missing or not FINISHED in MLflow, or an unreadable output.

Run:  .venv/bin/python -m bench.bench_reliability            (about 15 min on 2 busy cores)
      .venv/bin/python -m bench.bench_reliability --quick    (fewer trials and events, ~6 min)
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import random
import shutil
import subprocess
import tempfile
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from lambdaslim.cli import main as cli_main
from lambdaslim.testing.bad_inputs import (FULL_PIPELINE, FULL_TARGET, Chooser, dump_yaml, full_pipeline_for_target,
                                           judge, mutate_doc, mutate_text, snapshot)
from lambdaslim.testing.cli_runs import cli, cli_env, run_cli, run_together, tiny_project
from lambdaslim.testing.fuzz import fuzz_events
from lambdaslim.testing.handler_runs import build_task_root, reference_labels, send_events
from lambdaslim.testing.kill_resume import kill_and_resume
from lambdaslim.testing.mlflow_runs import mlflow_runs, parents_and_children, tracking_uri
from lambdaslim.testing.run_outputs import comparable, stage_store_problems
from lambdaslim.testing.tiny import build_tiny_classifier, make_rows, write_tiny_project

REPO = Path(__file__).resolve().parents[1]
CORPUS = sorted((REPO / "tests/pipelines/bad_pipelines").glob("*.yaml")) + sorted(
    (REPO / "tests/pipelines/bad_targets").glob("*.yaml"))
GOOD_FOR_TARGETS = full_pipeline_for_target("bad-target")  # a good pipeline, to try target files with


def validation_project(root: Path) -> Path:
    """The layout the corpus refers to; the model folder only needs a config.json to validate."""
    model = root / "models" / "tiny"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    write_tiny_project(root, "  - kind: export_onnx\n", name="tiny", model_dir=model)
    (root / "configs" / "targets" / "fuzz-target.yaml").write_text(FULL_TARGET)
    return root


def corpus_case(bad: Path, work: Path) -> tuple[str, str]:
    root = validation_project(work / bad.parent.name / bad.stem)
    file = root / "configs" / "pipelines" / "under-test.yaml"
    named = file
    if bad.parent.name == "bad_targets":
        named = root / "configs" / "targets" / "bad-target.yaml"
        named.write_bytes(bad.read_bytes())
        file.write_text(GOOD_FOR_TARGETS)
    else:
        file.write_bytes(bad.read_bytes())
    before = snapshot(root)
    res = subprocess.run(cli("run", str(file)), cwd=root, env=cli_env(root), capture_output=True, text=True,
                         timeout=600)
    verdict = judge(res.returncode, res.stdout, res.stderr, (file, named), wrote=snapshot(root) != before)
    if "Traceback" in res.stderr:
        verdict = "traceback"
    return f"{bad.parent.name}/{bad.name}", verdict


def bad_files(work: Path, mutants: int, seed: int) -> dict:
    print(f"\n[1] bad files: {len(CORPUS)} corpus files through `lambdaslim run` processes, {mutants} mutants")
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda f: corpus_case(f, work / "corpus"), CORPUS))
    wrong = [(name, v) for name, v in results if v != "refused"]
    for name, v in wrong:
        print(f"    NOT REFUSED {name}: {v}")
    # Mutants, judged in-process (a process each would take hours): valid or a one-line refusal, nothing else.
    root = validation_project(work / "mutants")
    rng = random.Random(seed)
    chooser = Chooser.seeded(rng)
    full, target = yaml.safe_load(FULL_PIPELINE), yaml.safe_load(FULL_TARGET)
    counts = {"valid": 0, "refused": 0}
    problems = []
    with contextlib.chdir(root):
        for i in range(mutants):
            file = root / "configs" / "pipelines" / "mutant.yaml"
            named = (file,)
            kind = i % 4
            if kind == 0:
                text = dump_yaml(mutate_doc(full, chooser)[0])
            elif kind == 1:
                text = mutate_text(FULL_PIPELINE, chooser)[0]
            else:
                t = root / "configs" / "targets" / "mutant-target.yaml"
                t.write_bytes((dump_yaml(mutate_doc(target, chooser)[0]) if kind == 2
                               else mutate_text(FULL_TARGET, chooser)[0]).encode("utf-8", "surrogatepass"))
                text, named = full_pipeline_for_target("mutant-target"), (file, t)
            file.write_bytes(text.encode("utf-8", "surrogatepass"))
            keep = {str(f.relative_to(root)) for f in named}
            before = snapshot(root, keep)
            out, err = io.StringIO(), io.StringIO()
            try:
                with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                    rc = cli_main(["validate", str(file)])
            except Exception:  # noqa: BLE001 - counted and printed: a traceback is what this figure looks for
                problems.append(f"mutant {i}: {traceback.format_exc(limit=3)}")
                continue
            v = judge(rc, out.getvalue(), err.getvalue(), named, wrote=snapshot(root, keep) != before)
            if v in counts:
                counts[v] += 1
            else:
                problems.append(f"mutant {i}: {v}")
    for p in problems[:5]:
        print(f"    MUTANT PROBLEM {p}")
    refused = len(results) - len(wrong)
    print(f"    corpus: {refused}/{len(results)} refused; mutants: {counts['refused']} refused, "
          f"{counts['valid']} valid, {len(problems)} other")
    return {"corpus_total": len(results), "corpus_refused": refused, "mutants": mutants,
            "mutants_refused": counts["refused"], "mutants_valid": counts["valid"], "mutant_problems": len(problems)}


def fuzz(work: Path, model: Path, events: int, seed: int) -> dict:
    from lambdaslim.compressors import Artifact
    from lambdaslim.compressors.export_onnx import ExportOnnxConfig, export_onnx
    from lambdaslim.compressors.base import StageContext

    print(f"\n[2] handler fuzzing: {events} events, 1,000 per fresh interpreter")
    texts = [t for t, _ in make_rows(50, 5)]
    best = work / "best"
    export_onnx(ExportOnnxConfig(kind="export_onnx"), Artifact(model, "pytorch"), best,
                StageContext(sample_texts=texts[:8], max_length=32))
    task = build_task_root(best, work / "task")
    env = {"LAMBDASLIM_MAX_TOKENS": "32", "LAMBDASLIM_MAX_BATCH": "32", "LAMBDASLIM_MAX_TEXT_CHARS": "2000"}
    all_events = fuzz_events(events, seed, texts)
    expected = reference_labels(best, [t for e in all_events if e.texts for t in e.texts], 32)
    totals = {"sent": 0, "processes": 0, "crashes": 0, "good": 0, "good_correct": 0, "bad": 0, "bad_4xx_json": 0,
              "over_6mb": 0, "over_6mb_4xx": 0, "seconds": 0.0}
    problems = []
    for start in range(0, len(all_events), 1000):
        chunk = all_events[start:start + 1000]
        o = send_events(task, chunk, expected, work, env)
        totals["sent"] += o.sent
        totals["processes"] += 1
        totals["crashes"] += int(o.crashed)
        for k, v in (("good", o.good), ("good_correct", o.good_correct), ("bad", o.bad),
                     ("bad_4xx_json", o.bad_4xx_json), ("over_6mb", o.over_limit), ("over_6mb_4xx", o.over_limit_4xx),
                     ("seconds", o.seconds)):
            totals[k] += v
        problems += o.problems
    for p in problems[:5]:
        print(f"    PROBLEM {p[:300]}")
    print(f"    sent {totals['sent']} in {totals['processes']} processes, crashes {totals['crashes']}; good "
          f"{totals['good_correct']}/{totals['good']} right; bad {totals['bad_4xx_json']}/{totals['bad']} 4xx+JSON; "
          f"over 6 MB {totals['over_6mb_4xx']}/{totals['over_6mb']} refused")
    return totals | {"problems": len(problems)}


def kill_resume(work: Path, model: Path, random_trials: int, seed: int, lines: list[int] | None) -> dict:
    print("\n[3] kill -9 and resume")
    ref_root = work / "reference"
    res = run_cli(tiny_project(ref_root, model), ref_root)
    assert res.rc == 0, res.stderr[-2000:]
    reference = comparable(json.loads((ref_root / "artifacts/tiny/report.json").read_text()), ref_root)
    progress = [i + 1 for i, line in enumerate(res.lines) if line.startswith(("pipeline ", "["))]
    points = [(n, 0.0) for n in (lines or progress)]
    rng = random.Random(seed)
    points += [(rng.choice(progress), round(rng.uniform(0.05, 1.0), 2)) for _ in range(random_trials)]
    print(f"    uninterrupted run: {res.seconds:.0f} s, {len(res.lines)} lines; {len(points)} kill points")
    trials = []
    for i, (n, delay) in enumerate(points):
        t = kill_and_resume(work / f"trial-{i:02d}", model, reference, n, delay)
        trials.append(t)
        print(f"    trial {i + 1:2d} kill {t.point:70.70} killed={t.killed!s:5} identical={t.identical!s:5} "
              f"killed-run={t.killed_run_status or 'none':8} mlflow-ok={t.killed_run_closed!s:5} "
              f"clean={t.clean_store!s:5} reused={t.resumed_cached}"
              + (f"  {t.detail[:200]}" if t.detail else ""))
    return {"trials": len(trials), "killed": sum(t.killed for t in trials),
            "identical": sum(t.identical for t in trials),
            "mlflow_ok": sum(t.killed_run_closed for t in trials),
            "dangling_closed": sum(t.killed_run_status == "KILLED" for t in trials),
            "clean_store": sum(t.clean_store for t in trials)}


def concurrency(work: Path, model: Path) -> dict:
    print("\n[4] concurrent runs on one MLflow store and one artifact directory")
    rounds = [("two pipelines", ["alpha", "beta"]), ("same pipeline twice", ["same", "same"]),
              ("three at once", ["alpha", "beta", "alpha"])]
    stages = {"alpha": "  - kind: export_onnx\n  - kind: quantize_dynamic\n",
              "beta": "  - kind: export_onnx\n  - kind: optimize_onnx\n",
              "same": "  - kind: export_onnx\n  - kind: quantize_dynamic\n"}
    started = lost = 0
    for label, names in rounds:
        root = work / label.replace(" ", "-")
        files = {n: tiny_project(root, model, name=n, stages=stages[n]) for n in dict.fromkeys(names)}
        t0 = time.perf_counter()
        procs = run_together([files[n] for n in names], root)
        started += len(procs)
        round_lost = sum(p.rc != 0 for p in procs)
        uri = tracking_uri(root)
        for n in dict.fromkeys(names):
            parents, children = parents_and_children(mlflow_runs(uri, n))
            want_parents = names.count(n)
            want_children = want_parents * (1 + len(stages[n].splitlines()))
            ok_parents = sum(p.info.status == "FINISHED" for p in parents)
            ok_children = sum(c.info.status == "FINISHED" for c in children)
            round_lost += max(0, want_parents - ok_parents) + max(0, want_children - ok_children)
            run_dir = root / "artifacts" / n
            try:
                report = json.loads((run_dir / "report.json").read_text())
                json.loads((run_dir / "metrics.json").read_text())
                for f in (run_dir / "candidates").iterdir():
                    json.loads(f.read_text())
                round_lost += report["mlflow_run_id"] not in {p.info.run_id for p in parents}
            except (OSError, ValueError, KeyError) as e:
                print(f"    CORRUPT output in {run_dir}: {e}")
                round_lost += 1
        round_lost += len(stage_store_problems(root / "artifacts" / "stages"))
        lost += round_lost
        waited = sum(any(line.startswith("waiting for the run of") for line in p.lines) for p in procs)
        print(f"    {label}: {len(procs)} processes, exit codes {[p.rc for p in procs]}, "
              f"{waited} waited for the pipeline lock, lost {round_lost}, {time.perf_counter() - t0:.0f} s")
    return {"concurrent_runs": started, "lost_runs": lost}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer kill points, events and mutants")
    ap.add_argument("--events", type=int)
    ap.add_argument("--mutants", type=int)
    ap.add_argument("--random-kills", type=int)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--only", choices=["bad", "fuzz", "kill", "concurrency"], action="append")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    events = args.events or (1200 if args.quick else 5000)
    mutants = args.mutants or (400 if args.quick else 2000)
    random_kills = args.random_kills if args.random_kills is not None else (0 if args.quick else 4)
    only = set(args.only or ["bad", "fuzz", "kill", "concurrency"])
    figures: dict = {}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lambdaslim-reliability-") as tmp:
        work = Path(tmp)
        model = build_tiny_classifier(work / "model")
        if "bad" in only:
            figures["bad_input"] = bad_files(work / "bad", mutants, args.seed)
        if "fuzz" in only:
            figures["fuzz"] = fuzz(work / "fuzz", model, events, args.seed)
        if "kill" in only:
            figures["kill_resume"] = kill_resume(work / "kill", model, random_kills, args.seed,
                                                 [2, 4, 6] if args.quick else None)
        if "concurrency" in only:
            figures["concurrency"] = concurrency(work / "conc", model)
        shutil.rmtree(work / "model")
    print(f"\nreliability figures ({time.perf_counter() - t0:.0f} s):")
    if "bad_input" in figures:
        b = figures["bad_input"]
        print(f"  bad files refused / total:              {b['corpus_refused']}/{b['corpus_total']}  "
              f"(+ {b['mutants']} mutants: {b['mutants_refused']} refused, {b['mutants_valid']} valid, "
              f"{b['mutant_problems']} otherwise)")
    if "fuzz" in figures:
        f = figures["fuzz"]
        print(f"  fuzz events sent / crashes:             {f['sent']}/{f['crashes']}  (good answered right "
              f"{f['good_correct']}/{f['good']}, bad answered 4xx+JSON {f['bad_4xx_json']}/{f['bad']})")
    if "kill_resume" in figures:
        k = figures["kill_resume"]
        print(f"  kill-and-resume trials / identical:     {k['trials']}/{k['identical']}  (killed while running "
              f"{k['killed']}; MLflow left consistent {k['mlflow_ok']}, of which a RUNNING run closed as KILLED and "
              f"linked {k['dangling_closed']}; clean store {k['clean_store']})")
    if "concurrency" in figures:
        c = figures["concurrency"]
        print(f"  concurrent runs / lost runs:            {c['concurrent_runs']}/{c['lost_runs']}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    ok = all([
        "bad_input" not in figures or (figures["bad_input"]["corpus_refused"] == figures["bad_input"]["corpus_total"]
                                       and figures["bad_input"]["mutant_problems"] == 0),
        "fuzz" not in figures or (figures["fuzz"]["crashes"] == 0 and figures["fuzz"]["problems"] == 0),
        "kill_resume" not in figures or (figures["kill_resume"]["identical"] == figures["kill_resume"]["trials"]
                                         == figures["kill_resume"]["mlflow_ok"] == figures["kill_resume"]["clean_store"]),
        "concurrency" not in figures or figures["concurrency"]["lost_runs"] == 0,
    ])
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
