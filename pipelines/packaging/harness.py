"""Run in a fresh interpreter: import a Lambda handler module (init), invoke it with events, report.

Usage: python -S -E -P harness.py TASK_ROOT MODULE EVENTS_JSON OUT_JSON
With -S -E -P the interpreter has the standard library only; TASK_ROOT (the unpacked package, like
/var/task) is the one directory added to sys.path. Stdlib only, so it adds nothing to what it measures.
Results go to OUT_JSON because the handler owns stdout (its JSON logs and metrics, as on Lambda).
"""
import importlib
import json
import os
import sys
import time


class LambdaContext:
    """The attributes of the context object Lambda passes to a handler (Powertools reads them)."""

    function_name = "lambdaslim-local"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:lambdaslim-local"
    log_group_name = "/aws/lambda/lambdaslim-local"
    log_stream_name = "local"

    def __init__(self, request_id: str, memory_mb: str):
        self.aws_request_id = request_id
        self.memory_limit_in_mb = memory_mb
        self._deadline = time.monotonic() + 30

    def get_remaining_time_in_millis(self) -> int:
        return int((self._deadline - time.monotonic()) * 1000)


def vm_hwm_mb() -> float:
    """Peak resident memory of this process (VmHWM; ru_maxrss would carry the parent's over exec)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


def main() -> None:
    task_root, module, events_file, out_file = sys.argv[1:5]
    sys.path.insert(0, task_root)
    with open(events_file) as f:
        events = json.load(f)
    memory = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1769")
    t0 = time.perf_counter()
    mod = importlib.import_module(module)
    init_ms = (time.perf_counter() - t0) * 1000
    rss_after_init = vm_hwm_mb()
    call_ms, responses = [], []
    for i, event in enumerate(events):
        ctx = LambdaContext(f"req-{i:05d}", memory)
        t = time.perf_counter()
        responses.append(mod.handler(event, ctx))
        call_ms.append((time.perf_counter() - t) * 1000)
    result = {
        "init_ms": init_ms,
        "call_ms": call_ms,
        "responses": responses,
        "peak_rss_mb": vm_hwm_mb(),
        "rss_after_init_mb": rss_after_init,
        "handler_file": mod.__file__,
        "sys_path": sys.path,
        "loaded": {m: m in sys.modules for m in ("torch", "transformers", "onnxruntime", "tokenizers", "numpy")},
        "task_root_files": sorted({m.__file__ for m in list(sys.modules.values())
                                   if (getattr(m, "__file__", None) or "").startswith(task_root)}),
    }
    with open(out_file, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
