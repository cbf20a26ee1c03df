"""What the reliability tests and `bench/bench_reliability.py` share: real `lambdaslim` processes started,
killed and resumed on tiny projects; candidate records compared without their timings; MLflow runs
counted; generated events for the packaged handler; mutations of valid pipeline files.

Nothing here is mocked: every run is the CLI in a fresh interpreter against a real sqlite MLflow store.
"""
from __future__ import annotations

import base64
import copy
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from pipelines.tiny import write_tiny_project

RUN_TIMEOUT_S = 900  # one tiny run takes ~30 s alone; generous for a machine shared with other jobs

# ------------------------------------------------------------------------------------------ projects

KILL_STAGES = "  - kind: export_onnx\n  - kind: quantize_dynamic\n"
# objective: size makes the selection independent of timings, so `best` must match too.
KILL_EXTRA = "objective: size\n"


def tiny_project(root: Path, model_dir: Path, name: str = "tiny", stages: str = KILL_STAGES,
                 extra: str = KILL_EXTRA) -> Path:
    """A tiny project (see pipelines.tiny) whose pipeline file also carries `extra` top-level keys."""
    file = write_tiny_project(root, stages, name=name, model_dir=model_dir)
    text = file.read_text()
    file.write_text(text.replace("\nstages:\n", f"\n{extra}stages:\n", 1))
    return file


def cli_env(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}", "HF_HUB_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"})
    env.pop("PYTEST_CURRENT_TEST", None)  # MLflow checks read-only sessions under pytest; not in a real run
    return env


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "pipelines.cli", *args]


@dataclass
class Proc:
    """One `lambdaslim run` in a fresh interpreter (its own process group, like a service would run it)."""

    pid: int
    rc: int | None
    lines: list[str]
    stderr: str
    killed: bool = False
    seconds: float = 0.0
    killed_at: str = ""  # the last line printed before the kill


def run_cli(file: Path, root: Path, kill_after_lines: int | None = None, kill_delay_s: float = 0.0,
            timeout_s: float = RUN_TIMEOUT_S) -> Proc:
    """Run `lambdaslim run FILE`; with kill_after_lines, SIGKILL its whole process group `kill_delay_s`
    after that many lines of progress have been printed (when it gets that far)."""
    err_file = root / f".stderr-{time.monotonic_ns()}.txt"
    t0 = time.perf_counter()
    with open(err_file, "w") as err:
        proc = subprocess.Popen(cli("run", str(file)), cwd=root, env=cli_env(root), stdout=subprocess.PIPE,
                                stderr=err, text=True, start_new_session=True)
        lines, killed, killed_at = [], False, ""
        deadline = time.monotonic() + timeout_s
        try:
            for line in proc.stdout:
                lines.append(line.rstrip("\n"))
                if kill_after_lines is not None and len(lines) >= kill_after_lines and not killed:
                    time.sleep(kill_delay_s)
                    killed = kill_group(proc)
                    killed_at = lines[-1]
                if time.monotonic() > deadline:
                    kill_group(proc)
                    raise TimeoutError(f"lambdaslim run {file} took more than {timeout_s} s")
            rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        finally:
            if proc.poll() is None:
                kill_group(proc)
                proc.wait()
    stderr = err_file.read_text()
    err_file.unlink()
    return Proc(proc.pid, rc, lines, stderr, killed, time.perf_counter() - t0, killed_at)


def kill_group(proc: subprocess.Popen) -> bool:
    """kill -9 the run and whatever it started (a memory probe); True when it was still running."""
    if proc.poll() is not None:
        return False
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return True


# ------------------------------------------------------------------------------------------ records

TIMING_METRICS = re.compile(r"^(latency_|peak_rss|init_s|rss)")
TIMING_GATES = {"latency_p95", "memory"}  # their value and margin are measured times and memory
TIMING_INFO = re.compile(r"(rss|_ms$|_s$|seconds|cached)")


def comparable(report: dict, root: Path) -> dict:
    """report.json without what depends on the clock or on which run did the work: timings, memory,
    cache flags and the MLflow run id; paths inside the project relative to its root (`root`).
    Everything else must be identical between two runs."""
    out = {"pipeline": report["pipeline"], "best": report["best"], "candidates": []}
    for c in report["candidates"]:
        c = copy.deepcopy(c)
        c.pop("cached", None)
        if Path(c["path"]).is_relative_to(root):
            c["path"] = str(Path(c["path"]).relative_to(root))
        c["metrics"] = {k: v for k, v in c["metrics"].items() if not TIMING_METRICS.match(k)}
        c["stage_info"] = {k: v for k, v in c["stage_info"].items() if not TIMING_INFO.search(k)}
        for g in c["gates"]:
            if g["gate"] in TIMING_GATES:
                g.pop("value"), g.pop("margin"), g.pop("detail", None)
        out["candidates"].append(c)
    return out


def diff(a, b, where: str = "") -> str:
    """The first place two JSON-like values differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if a.get(k, "<missing>") != b.get(k, "<missing>"):
                return diff(a.get(k, "<missing>"), b.get(k, "<missing>"), f"{where}.{k}")
        return ""
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return next((diff(x, y, f"{where}[{i}]") for i, (x, y) in enumerate(zip(a, b)) if x != y), "")
    return "" if a == b else f"{where.lstrip('.')}: {str(a)[:200]} != {str(b)[:200]}"


def stage_store_problems(store: Path) -> list[str]:
    """Anything in the stage store that could be mistaken for, or is, an unfinished stage."""
    problems = []
    for d in sorted(store.iterdir()) if store.is_dir() else []:
        if d.name.startswith("."):
            problems.append(f"leftover {d.name}")
        elif d.name != "cache" and not d.name.startswith("baseline-") and not (d / "stage.json").is_file():
            problems.append(f"{d.name} has no stage.json")
    return problems


def mlflow_runs(uri: str, experiment: str) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    return [] if exp is None else list(client.search_runs([exp.experiment_id], max_results=1000))


def parents_and_children(runs: list) -> tuple[list, list]:
    return ([r for r in runs if "mlflow.parentRunId" not in r.data.tags],
            [r for r in runs if "mlflow.parentRunId" in r.data.tags])


# ------------------------------------------------------------------------------------------ kill and resume


@dataclass
class Trial:
    point: str
    killed: bool
    identical: bool
    killed_run_closed: bool  # nothing left RUNNING; the killed process's run, if it was open, is KILLED and linked
    clean_store: bool
    detail: str = ""
    resumed_cached: int = 0
    killed_run_status: str | None = None  # None: killed before its MLflow run existed; FINISHED: after it closed it


def kill_and_resume(root: Path, model_dir: Path, reference: dict, kill_after_lines: int,
                    kill_delay_s: float = 0.0) -> Trial:
    """`reference`: comparable() of an uninterrupted run's report.json."""
    """A fresh project: `lambdaslim run` killed after N progress lines (+ a delay), then run again to the end;
    the resumed report is compared with an uninterrupted run's."""
    file = tiny_project(root, model_dir)
    point = f"after line {kill_after_lines}" + (f" + {kill_delay_s:.2f} s" if kill_delay_s else "")
    first = run_cli(file, root, kill_after_lines, kill_delay_s)
    if first.killed:
        point += f" ({first.killed_at[:40]!r})"
    second = run_cli(file, root)
    if second.rc != 0:
        return Trial(point, first.killed, False, False, False, f"resumed run exit {second.rc}: {second.stderr[-2000:]}")
    report = json.loads((root / "artifacts" / "tiny" / "report.json").read_text())
    identical = comparable(report, root) == reference
    uri = f"sqlite:///{root / 'mlflow.db'}"
    parents, children = parents_and_children(mlflow_runs(uri, "tiny"))
    by_pid = {r.data.tags.get("lambdaslim.pid"): r for r in parents}
    killed_run = by_pid.get(str(first.pid))
    resumed = by_pid.get(str(second.pid))
    closed = resumed is not None and resumed.info.status == "FINISHED"
    if closed and first.killed and killed_run is not None and killed_run.info.status != "FINISHED":
        closed = killed_run.info.status == "KILLED" and killed_run.info.run_id in resumed.data.tags.get(
            "lambdaslim.resumes", "").split(",")
    closed = closed and not any(r.info.status == "RUNNING" for r in parents + children)
    problems = stage_store_problems(root / "artifacts" / "stages")
    leftovers = [p.name for p in (root / "artifacts" / "tiny").rglob(".*") if p.name != ".lock"]
    detail = "" if identical else diff(comparable(report, root), reference)
    return Trial(point, first.killed, identical, closed, not problems and not leftovers,
                 detail + "; ".join(problems + leftovers), sum(c["cached"] for c in report["candidates"]),
                 killed_run.info.status if killed_run is not None else None)


# ------------------------------------------------------------------------------------------ concurrency


def run_together(files: list[Path], root: Path) -> list[Proc]:
    """Start one `lambdaslim run` per file at the same moment (threads block on the processes)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(files)) as pool:
        return list(pool.map(lambda f: run_cli(f, root), files))


# ------------------------------------------------------------------------------------------ handler fuzzing

V1 = {"resource": "/classify", "httpMethod": "POST", "requestContext": {"stage": "prod"}, "isBase64Encoded": False}
V2 = {"version": "2.0", "routeKey": "POST /classify", "requestContext": {"http": {"method": "POST"}}}
LAMBDA_PAYLOAD_LIMIT = 6 * 1024 * 1024


@dataclass
class FuzzEvent:
    event: object
    category: str
    texts: list[str] | None = None  # for a good event: the texts it must classify, in order
    proxy: bool = False
    over_limit: bool = False  # bigger than Lambda's 6 MB request payload


@dataclass
class FuzzSet:
    events: list[FuzzEvent] = field(default_factory=list)

    def add(self, event, category: str, texts: list[str] | None = None, proxy: bool = False) -> None:
        self.events.append(FuzzEvent(event, category, texts, proxy, len(json.dumps(event)) > LAMBDA_PAYLOAD_LIMIT))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _nested(depth: int, leaf) -> object:
    for _ in range(depth):
        leaf = [leaf]
    return leaf


def fuzz_events(n: int, seed: int, good_texts: list[str], max_batch: int = 32, max_chars: int = 2000) -> list[FuzzEvent]:
    """n generated events (at least), about one in five good. Good ones carry real sentences (sometimes with
    emoji, accents, CJK or control characters, up to the length limit); bad ones are wrong shapes, empty
    texts and lists, too long texts, oversized batches, lone surrogates, non-UTF-8 and non-base64 bodies,
    deeply nested junk, invalid JSON, huge numbers, and payloads over Lambda's 6 MB."""
    rng = random.Random(seed)
    s = FuzzSet()
    decorations = ["", " 🎬🍿", " – très bien", " 電影", " \u0301\u0301", " \t\x00\x07", " ¡¿", " 😀" * 3]

    def text() -> str:
        t = rng.choice(good_texts) + rng.choice(decorations)
        if rng.random() < 0.05:  # long but within the limit: truncated to the model's tokens
            t = (t + " ") * (max_chars // (len(t) + 1))
        return t[:max_chars]

    def texts(k: int) -> list[str]:
        return [text() for _ in range(k)]

    def junk(depth: int = 0):
        kind = rng.randrange(9 if depth < 3 else 6)
        if kind == 0:
            return None
        if kind == 1:
            return rng.choice([0, -1, 2**63, -2**70, 3.14, 1e308, float("-0.0")])
        if kind == 2:
            return rng.choice([True, False])
        if kind == 3:
            return "".join(chr(rng.randrange(0x20, 0x2FFF)) for _ in range(rng.randrange(0, 30)))
        if kind == 4:
            return rng.choice(["", " ", "\n", "inputs", "null", "{}", "[]", "\ud800", "\udfff x"])
        if kind == 5:
            return rng.choice([[], {}, [[]], [{}]])
        if kind == 6:
            return [junk(depth + 1) for _ in range(rng.randrange(1, 5))]
        if kind == 7:
            return {rng.choice(["inputs", "text", "data", "", "🎬", "input"]): junk(depth + 1)
                    for _ in range(rng.randrange(1, 4))}
        return _nested(rng.randrange(1, 60), junk(depth + 1))

    def usable(x) -> bool:
        """What the handler's contract accepts (its docstring): a text, a list of 1..max_batch texts, or
        {"inputs": either}; a text is non-blank, at most max_chars long and valid Unicode."""
        def text_ok(t):
            return isinstance(t, str) and bool(t.strip()) and len(t) <= max_chars and not re.search("[\ud800-\udfff]", t)
        if isinstance(x, dict):
            return set(x) == {"inputs"} and usable(x["inputs"]) and not isinstance(x["inputs"], dict)
        if isinstance(x, list):
            return 0 < len(x) <= max_batch and all(text_ok(t) for t in x)
        return text_ok(x)

    def bad_junk():
        while True:
            x = junk()
            if not usable(x):
                return x

    def not_text_list():
        """A list with at least one element that is not a usable text."""
        items = texts(rng.randrange(0, 4))
        bad = rng.choice([None, 1, 2.5, True, [], {}, ["x"], {"inputs": "x"}, "", "   ", "\n\t", "\ud800",
                          "ok \udc80", "x" * (max_chars + 1)])
        items.insert(rng.randrange(len(items) + 1), bad)
        return items

    def body(payload, b64: bool, v2: bool, raw: str | None = None) -> dict:
        data = raw if raw is not None else json.dumps(payload)
        if b64:
            return (V2 if v2 else V1) | {"body": _b64(data.encode("utf-8", "surrogatepass")), "isBase64Encoded": True}
        return V2 | {"body": data} if v2 else V1 | {"body": data}

    # Fixed cases first, so every kind is present whatever n is.
    big = "x" * (LAMBDA_PAYLOAD_LIMIT + 500_000)
    s.add({"inputs": big}, "over-6MB direct text")
    s.add({"inputs": ["ok"] * 1_200_000}, "over-6MB direct batch")
    s.add(big, "over-6MB bare text")
    s.add(body({"inputs": big}, False, False), "over-6MB proxy v1", proxy=True)
    s.add(body({"inputs": "a good film"}, False, True, raw=json.dumps({"inputs": "a good film", "pad": big})),
          "over-6MB proxy v2", proxy=True)
    s.add(body(None, True, True, raw=json.dumps({"inputs": big[: LAMBDA_PAYLOAD_LIMIT * 4 // 5]})),
          "over-6MB proxy base64", proxy=True)
    s.add(body(None, False, False, raw="[" * 200_000), "deeply nested JSON body", proxy=True)
    s.add(body(None, False, True, raw='{"inputs": ' + "9" * 5000 + "}"), "5000-digit number", proxy=True)
    s.add(body(None, False, True, raw='{"inputs": "\\ud800"}'), "lone surrogate in a JSON body", proxy=True)
    s.add({"inputs": _nested(400, "deep")}, "nested 400 deep")
    for bad_body in (None, "", 42, ["a"], {"inputs": "x"}, True):
        s.add(dict(V1) | {"body": bad_body}, f"proxy body {type(bad_body).__name__}", proxy=True)
    s.add(dict(V1) | {"body": "aGVsbG8=", "isBase64Encoded": {"yes": 1}}, "proxy base64 flag junk", proxy=True)
    s.add(body(None, True, False, raw="\ufeff" + json.dumps({"inputs": "bom"})), "BOM before JSON", proxy=True)

    while len(s.events) < n:
        r = rng.random()
        if r < 0.2:  # good, in every accepted shape
            k = rng.randrange(1, max_batch + 1) if rng.random() < 0.4 else 1
            ts = texts(k)
            shape = rng.randrange(6)
            if shape == 0:
                s.add({"inputs": ts[0]}, "good direct text", ts[:1])
            elif shape == 1:
                s.add({"inputs": ts}, "good direct batch", ts)
            elif shape == 2:
                s.add(ts[0], "good bare text", ts[:1])
            elif shape == 3:
                s.add(ts, "good bare list", ts)
            else:
                s.add(body({"inputs": ts}, shape == 5, rng.random() < 0.5), "good proxy", ts, proxy=True)
            continue
        kind = rng.randrange(13)
        if kind == 0:
            s.add(bad_junk(), "junk value")
        elif kind == 1:
            s.add({rng.choice(["text", "input", "Inputs", "", "inputs "]): junk()}, "wrong field")
        elif kind == 2:
            s.add({"inputs": text(), rng.choice(["extra", "inputs2", "🎬", "x" * 1000]): junk()}, "extra field")
        elif kind == 3:
            s.add({"inputs": rng.choice([None, 1, 2.5, True, {}, {"a": "b"}])}, "inputs not a text")
        elif kind == 4:
            s.add(rng.choice([{"inputs": []}, [], {"inputs": ""}, "", "   ", {"inputs": "\n\t "}]), "empty")
        elif kind == 5:
            s.add({"inputs": not_text_list()} if rng.random() < 0.7 else not_text_list(), "list with a non-text")
        elif kind == 6:
            s.add({"inputs": "y" * rng.choice([max_chars + 1, 10_000, 100_000, 1_000_000])}, "text too long")
        elif kind == 7:
            s.add({"inputs": ["ok"] * rng.choice([max_batch + 1, 100, 10_000])}, "batch too large")
        elif kind == 8:
            s.add({"inputs": rng.choice(["\ud800", "fine \udfff", "\udbff\udc00\ud800 x"])}, "lone surrogate")
        elif kind == 9:
            raw = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64))) + b"\xff\xfe"
            s.add(dict(V2) | {"body": _b64(raw), "isBase64Encoded": True}, "non-UTF-8 body", proxy=True)
        elif kind == 10:
            raw = rng.choice(["{nope", "{'inputs': 'x'}", '{"inputs": "x"', "nan", "[1,]", "\x00", "inputs=x",
                              json.dumps({"inputs": "x"})[: rng.randrange(1, 15)]])
            s.add(body(None, rng.random() < 0.5, rng.random() < 0.5, raw=raw), "invalid JSON body", proxy=True)
        elif kind == 11:
            s.add(dict(V1 if rng.random() < 0.5 else V2)
                  | {"body": rng.choice(["***", "a", "aGVsbG8", "!!!!", "\u00e9t\u00e9"]), "isBase64Encoded": True},
                  "not base64", proxy=True)
        else:
            payload = rng.choice([bad_junk(), {"inputs": not_text_list()}, {"inputs": []}, {"nope": 1}])
            s.add(body(payload, rng.random() < 0.5, rng.random() < 0.5), "bad payload in a proxy body", proxy=True)
    return s.events


@dataclass
class FuzzOutcome:
    sent: int
    crashed: bool  # the process died (or a handler call raised, which kills the harness)
    good: int
    good_correct: int
    bad: int
    bad_4xx_json: int
    over_limit: int
    over_limit_4xx: int
    problems: list[str]
    stderr: str
    seconds: float


def check_response(ev: FuzzEvent, r, expected: dict[str, str]) -> str | None:
    """None when the response is right for the event, else what is wrong."""
    if not isinstance(r, dict) or "statusCode" not in r:
        return f"not a response: {str(r)[:200]}"
    status = r["statusCode"]
    if ev.proxy:
        if r.get("headers", {}).get("Content-Type") != "application/json":
            return "proxy response without a JSON content type"
        try:
            payload = json.loads(r["body"])
        except (TypeError, ValueError):
            return f"proxy body is not JSON: {str(r.get('body'))[:200]}"
    else:
        payload = r
    if ev.texts is not None:
        if status != 200:
            return f"good event answered {status}: {str(payload)[:300]}"
        labels = [p["label"] for p in payload["predictions"]]
        want = [expected[t] for t in ev.texts]
        if labels != want:
            return f"labels {labels} != {want}"
        if any(abs(sum(p["scores"].values()) - 1) > 1e-4 for p in payload["predictions"]):
            return "scores do not sum to 1"
        return None
    if status not in (400, 413) or (ev.over_limit and ev.proxy and status != 413):
        return f"bad event ({ev.category}) answered {status}"
    err = payload.get("error") if isinstance(payload, dict) else None
    if not (isinstance(err, dict) and isinstance(err.get("message"), str) and err["message"]
            and err.get("type") in ("BadRequest", "PayloadTooLarge")):
        return f"bad event ({ev.category}) without a JSON error: {str(payload)[:300]}"
    return None


def send_events(task_root: Path, events: list[FuzzEvent], expected: dict[str, str], workdir: Path,
                env: dict | None = None) -> FuzzOutcome:
    """Every event to the packaged handler in one fresh interpreter (stdlib + the package only), through
    the same harness `lambdaslim package` measures with; then each response checked."""
    from pipelines.packaging.invoke import HARNESS
    from pipelines.packaging.runtime_api import lambda_env

    events_file, out_file = workdir / "events.json", workdir / "out.json"
    events_file.write_text(json.dumps([e.event for e in events]))
    out_file.unlink(missing_ok=True)
    cmd = [sys.executable, "-B", "-S", "-E", "-P", str(HARNESS), str(task_root), "handler", str(events_file),
           str(out_file)]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=task_root, env=lambda_env(1769, "3.11", env), capture_output=True, text=True,
                         timeout=RUN_TIMEOUT_S)
    seconds = time.perf_counter() - t0
    crashed = res.returncode != 0 or not out_file.is_file()
    responses = json.loads(out_file.read_text())["responses"] if not crashed else []
    problems = [] if not crashed else [f"exit {res.returncode}: {res.stderr[-3000:]}"]
    good = bad = good_ok = bad_ok = over = over_ok = 0
    for ev, r in zip(events, responses):
        wrong = check_response(ev, r, expected)
        if ev.texts is not None:
            good += 1
            good_ok += wrong is None
        else:
            bad += 1
            bad_ok += wrong is None
        if ev.over_limit:
            over += 1
            over_ok += wrong is None
        if wrong:
            problems.append(wrong)
    if "Traceback" in res.stderr or "Traceback" in res.stdout:
        problems.append("a traceback was printed: " + res.stderr[-2000:])
    return FuzzOutcome(len(events), crashed, good, good_ok, bad, bad_ok, over, over_ok, problems, res.stderr, seconds)


def build_task_root(best_dir: Path, dest: Path) -> Path:
    """A package tree as Lambda unpacks it (dependencies from this venv + handler.py + model/), built with
    the packaging code itself; byte-compilation skipped (the harness runs with -B anyway)."""
    from pipelines.packaging import build, deps

    site = dest.parent / (dest.name + "-site")
    deps.install_from_venv([p.name for p in deps.runtime_pins("onnx")], site)
    build.assemble_tree(site, best_dir, dest, python="0.0")  # "0.0": not this interpreter, so no bytecode
    shutil.rmtree(site)
    return dest


def reference_labels(best_dir: Path, texts: list[str], max_length: int) -> dict[str, str]:
    """What the project's own ONNX Runtime path (transformers tokenizer, batch 1) predicts for each text."""
    from compressors import Artifact
    from pipelines.runtime import load_tokenizer, open_predictor

    tok = load_tokenizer(best_dir)
    predict = open_predictor(Artifact(best_dir, "onnx"), 1)
    id2label = json.loads((best_dir / "config.json").read_text())["id2label"]
    out = {}
    for t in dict.fromkeys(texts):
        enc = tok(t, truncation=True, max_length=max_length, return_tensors="np")
        out[t] = id2label[str(int(predict(dict(enc)).argmax()))]
    return out


# ------------------------------------------------------------------------------------------ pipeline mutations


class Chooser:
    """Where mutations get their choices: a seeded random.Random (bench) or Hypothesis's `data.draw` (tests)."""

    def __init__(self, choice: Callable[[list], object], text: Callable[[], str]):
        self.choice, self.text = choice, text

    @classmethod
    def seeded(cls, rng: random.Random) -> "Chooser":
        alphabet = [":", "-", " ", "\n", "\t", "{", "}", "[", "]", "'", '"', "#", "&", "*", "!", "%", "|", ">",
                    "?", ",", "a", "0", "é", "\x00", "\ufeff", "\u2028", "\x85", "🎬", "\\"]
        return cls(rng.choice, lambda: "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 12))))


JUNK_VALUES = [None, 0, -1, 1.5, 10**30, float("inf"), True, "", "x", "../../outside", "/abs/path", "🎬", "a\nb",
               [], [1, "a"], {}, {"a": 1}, {"kind": "export_onnx"}, "2020-01-01", "0x1F", "!!python/object", "~",
               "hf:org/model", "..", ".", "stages", 17, "17", "null"]
TEXT_CHUNKS = ["\n", "  ", "\t", ": ", "- ", "{", "}", "[", "]", '"', "'", "&a ", "*a", "!!python/object/apply:os.system "
               "['touch pwned'] ", "!!binary ", "? [a, b]\n", "<<: *x\n", "%YAML 1.1\n", "---\n", "...\n", "\x00",
               "\ufeff", "\u2028", "\x85", "\r", "name: dup\n", "stages: []\n", "é", "🎬", "#", "|\n", ">\n"]


def _paths(doc, prefix=()) -> list[tuple]:
    out = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out.append(prefix + (k,))
            out += _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out.append(prefix + (i,))
            out += _paths(v, prefix + (i,))
    return out


def _parent(doc, path):
    for key in path[:-1]:
        doc = doc[key]
    return doc


def mutate_doc(doc: dict, c: Chooser) -> tuple[dict, str]:
    """One structural mutation of a parsed pipeline or target file: drop, rename, retype, insert, wrap."""
    doc = copy.deepcopy(doc)
    if not isinstance(doc, dict) or not doc:  # nothing left to mutate: the file becomes junk
        return c.choice(JUNK_VALUES), "replace the whole file"
    path = c.choice(_paths(doc))
    parent, key = _parent(doc, path), path[-1]
    op = c.choice(["drop", "rename", "junk", "insert", "wrap-list", "wrap-dict", "stringify", "duplicate-stage",
                   "empty-container"])
    where = ".".join(map(str, path))
    if op == "drop":
        del parent[key]
    elif op == "rename" and isinstance(parent, dict):
        new = c.choice([key + "x", key.upper(), key.replace("_", "-"), key[:-1], c.text(), "kind", "name"]) \
            if isinstance(key, str) else c.text()
        parent[new] = parent.pop(key)
    elif op == "junk":
        parent[key] = c.choice(JUNK_VALUES)
    elif op == "insert":
        target = parent[key] if isinstance(parent[key], dict) else parent
        if isinstance(target, dict):
            target[c.choice([c.text(), "extra", "kind", "name", "path", "opset", "fallback"])] = c.choice(JUNK_VALUES)
        else:
            target.insert(0, c.choice(JUNK_VALUES))
    elif op == "wrap-list":
        parent[key] = [parent[key]]
    elif op == "wrap-dict":
        parent[key] = {"value": parent[key]}
    elif op == "stringify":
        parent[key] = str(parent[key])
    elif op == "duplicate-stage" and isinstance(doc.get("stages"), list) and doc["stages"]:
        doc["stages"].append(copy.deepcopy(c.choice(doc["stages"])))
    elif op == "empty-container":
        parent[key] = type(parent[key])() if isinstance(parent[key], (dict, list)) else None
    return doc, f"{op} {where}"


def mutate_text(text: str, c: Chooser) -> tuple[str, str]:
    """One textual mutation: insert a chunk (YAML syntax, tags, odd characters), delete a span, duplicate a
    line, cut the file short, or swap indentation for a tab."""
    lines = text.splitlines(keepends=True) or [""]
    op = c.choice(["insert", "delete", "duplicate-line", "truncate", "tab-indent", "swap-lines"])
    pos = c.choice(list(range(len(text) + 1)))
    if op == "insert":
        chunk = c.choice(TEXT_CHUNKS + [c.text()])
        return text[:pos] + chunk + text[pos:], f"insert {chunk!r} at {pos}"
    if op == "delete":
        end = min(len(text), pos + c.choice([1, 2, 5, 20, 80]))
        return text[:pos] + text[end:], f"delete {pos}:{end}"
    if op == "truncate":
        return text[:pos], f"truncate at {pos}"
    i = c.choice(list(range(len(lines))))
    if op == "duplicate-line":
        return "".join(lines[: i + 1] + [lines[i]] + lines[i + 1:]), f"duplicate line {i + 1}"
    if op == "tab-indent":
        stripped = lines[i].lstrip(" ")
        return "".join(lines[:i] + ["\t" + stripped] + lines[i + 1:]), f"tab-indent line {i + 1}"
    j = c.choice(list(range(len(lines))))
    lines[i], lines[j] = lines[j], lines[i]
    return "".join(lines), f"swap lines {i + 1} and {j + 1}"


# A valid pipeline file using every section, for the tiny project layout (models/tiny, data/eval.tsv,
# data/calib.tsv, configs/targets/x86-1769mb-zip.yaml), so mutations reach every part of the schema.
FULL_PIPELINE = """name: full
model:
  path: models/tiny
  label_names: [negative, positive]
data:
  eval: {path: data/eval.tsv}
  calibration: {path: data/calib.tsv}
  max_length: 32
target: x86-1769mb-zip
gates:
  accuracy: {metric: accuracy, max_drop: 1.0, relative: false}
  latency_p95_ms: 25
  size_mb: 80
  memory: true
benchmark: {latency_runs: 200, warmup_runs: 5, batch_size: 16}
tracking: {experiment: full-exp, log_models: false}
objective: size
artifacts_dir: build/artifacts
stages:
  - {kind: export_onnx, opset: 17}
  - {kind: optimize_onnx, name: opt, level: 2}
  - kind: quantize_static
    calibration_samples: 16
    fallback: {max_drop: 0.5, max_trials: 2}
  - {kind: quantize_dynamic, per_channel: true, exclude_nodes: []}
"""
FULL_TARGET = "name: fuzz-target\nmemory_mb: 1769\narchitecture: x86_64\npackage_type: zip\npython: '3.11'\n"


def judge(rc: int, out: str, err: str, named: tuple[Path, ...], wrote: bool) -> str:
    """'valid', 'refused' (exit 2, one line naming one of the files, nothing on stdout), or what is wrong."""
    if wrote:
        return "wrote something"
    if rc == 0:
        return "valid" if err == "" else f"exit 0 with stderr {err[:200]!r}"
    if rc != 2:
        return f"exit {rc}: {err[-300:]!r}"
    if out or not err.endswith("\n") or len(err.splitlines()) != 1 or err.count("\n") != 1:
        return f"not one line: {err[:300]!r}"
    if not re.match(rf"lambdaslim: error: ({'|'.join(re.escape(str(f)) for f in named)})(:\d+)?: .", err):
        return f"does not name the file: {err[:300]!r}"
    return "refused"


def dump_yaml(doc) -> str:
    import yaml

    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


def snapshot(folder: Path, skip: set[str] = frozenset()) -> dict[str, int]:
    """Every path below folder with its size (a folder: -1), but the files named in skip."""
    return {str(p.relative_to(folder)): (p.stat().st_size if p.is_file() else -1)
            for p in folder.rglob("*") if str(p.relative_to(folder)) not in skip}
