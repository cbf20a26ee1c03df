"""A local Lambda Runtime API on loopback, and the real runtime interface client (awslambdaric) driving
a package against it: the same client, HTTP protocol and handler loading as the managed Python runtime.

Endpoints served (docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html): GET invocation/next (long
poll: answered when the next event is queued), POST invocation/{id}/response, invocation/{id}/error,
init/error. Times are taken here, on the Runtime API side, as Lambda takes them: init from process
start to the first `next`, duration from an event handed out to its response posted.
"""
from __future__ import annotations

import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from lambdaslim.measure.peak_memory import peak_rss_mb

PREFIX = "/2018-06-01/runtime"
# Put the task root and the emulated runtime on sys.path, then start awslambdaric as the managed runtime does.
BOOTSTRAP = ("import runpy, sys; sys.path[:0] = sys.argv[1:3]; sys.argv = ['awslambdaric', sys.argv[3]]; "
             "runpy.run_module('awslambdaric', run_name='__main__', alter_sys=True)")


@dataclass
class _State:
    events: queue.Queue = field(default_factory=queue.Queue)
    results: queue.Queue = field(default_factory=queue.Queue)
    first_next: float | None = None
    handed_out: dict = field(default_factory=dict)  # request id -> perf_counter when delivered


class _RuntimeApiHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # the C client keeps its connection alive between calls
    state: _State

    def setup(self) -> None:
        super().setup()
        # Without it, a response's header and body segments wait out the client's delayed ACK (~40 ms).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *args) -> None:  # quiet: the measurement, not an access log
        pass

    def _reply(self, code: int, body: bytes = b'{"status":"OK"}', headers: dict | None = None) -> None:
        self.send_response(code)
        for k, v in (headers or {"Content-Type": "application/json"}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def do_GET(self) -> None:
        if self.path != f"{PREFIX}/invocation/next":
            return self._reply(404, b'{"errorMessage":"unknown path"}')
        st = self.state
        if st.first_next is None:
            st.first_next = time.perf_counter()
        item = st.events.get()
        if item is None:  # the driver is done: leave the client waiting, as a frozen environment would
            self.close_connection = True
            return
        request_id, event = item
        body = json.dumps(event).encode()
        st.handed_out[request_id] = time.perf_counter()
        self._reply(200, body, {
            "Content-Type": "application/json",
            "Lambda-Runtime-Aws-Request-Id": request_id,
            "Lambda-Runtime-Deadline-Ms": str(int(time.time() * 1000) + 30_000),
            "Lambda-Runtime-Invoked-Function-Arn": "arn:aws:lambda:us-east-1:000000000000:function:lambdaslim-local",
            "Lambda-Runtime-Trace-Id": f"Root=1-00000000-{request_id[-12:]:0>24};Sampled=0",
        })

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        now = time.perf_counter()
        parts = self.path[len(PREFIX):].strip("/").split("/")
        if parts == ["init", "error"]:
            self.state.results.put(("init_error", None, body, now))
        elif len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response", "error"):
            self.state.results.put((parts[2], parts[1], body, now))
        else:
            return self._reply(404, b'{"errorMessage":"unknown path"}')
        self._reply(202)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        # The client is killed mid long-poll when the driver is done: a reset connection is the expected end.
        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            super().handle_error(request, client_address)


@dataclass
class RicRun:
    init_ms: float  # process start to the first `next`: interpreter, runtime client, handler init
    durations_ms: list[float]
    responses: list
    errors: list
    peak_rss_mb: float


def drive(task_root: Path, runtime_dir: Path, events: list, env: dict[str, str], timeout_s: float = 120,
          log_file: Path | None = None) -> RicRun:
    """Start awslambdaric on the package in a fresh interpreter (stdlib + task root + runtime only) and
    hand it the events one at a time through a loopback Runtime API."""
    state = _State()
    handler_cls = type("Handler", (_RuntimeApiHandler,), {"state": state})
    server = _Server(("127.0.0.1", 0), handler_cls)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = env | {"AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{server.server_port}", "LAMBDA_TASK_ROOT": str(task_root),
                 "_HANDLER": "handler.handler"}
    cmd = [sys.executable, "-B", "-S", "-E", "-P", "-c", BOOTSTRAP, str(task_root), str(runtime_dir), "handler.handler"]
    out = open(log_file, "wb") if log_file else subprocess.DEVNULL
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=task_root, env=env, stdout=out, stderr=subprocess.STDOUT)
    durations, responses, errors = [], [], []
    try:
        for i, event in enumerate(events):
            rid = f"00000000-0000-4000-8000-{i:012d}"
            state.events.put((rid, event))
            kind, got_id, body, t_done = _next_result(state, proc, timeout_s)
            if kind == "init_error":
                raise RuntimeError(f"the handler failed its init under awslambdaric: {body.decode(errors='replace')}")
            durations.append((t_done - state.handed_out[got_id]) * 1000)
            (responses if kind == "response" else errors).append(json.loads(body or b"null"))
        rss = peak_rss_mb(proc.pid)
    finally:
        state.events.put(None)
        proc.kill()
        proc.wait()
        server.shutdown()
        server.server_close()
        if log_file:
            out.close()
    return RicRun((state.first_next - t0) * 1000, durations, responses, errors, rss)


def _next_result(state: _State, proc: subprocess.Popen, timeout_s: float):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            return state.results.get(timeout=0.2)
        except queue.Empty:
            if proc.poll() is not None:
                raise RuntimeError(f"awslambdaric exited with code {proc.returncode} before answering") from None
    raise TimeoutError(f"no answer from awslambdaric within {timeout_s:.0f} s")


def lambda_env(memory_mb: int, python: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment Lambda sets for a function (the parts a handler reads), nothing from this shell
    but PATH, so no PYTHON* variable or venv leaks into the fresh interpreter."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "TZ": ":UTC",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_LAMBDA_FUNCTION_NAME": "lambdaslim-local",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb),
        "AWS_EXECUTION_ENV": f"AWS_Lambda_python{python}",
        "POWERTOOLS_SERVICE_NAME": "lambdaslim",
        "POWERTOOLS_METRICS_NAMESPACE": "lambdaslim",
    } | (extra or {})
