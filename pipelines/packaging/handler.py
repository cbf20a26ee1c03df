"""AWS Lambda handler for a lambdaslim text classifier: ONNX Runtime, tokenizers and numpy, no torch.

Copied verbatim into every package (zip or container image) as handler.py, with the model beside it in
model/ (model.onnx, tokenizer.json, config.json with id2label). Configure with environment variables:
LAMBDASLIM_MAX_BATCH (texts per request, 32), LAMBDASLIM_MAX_TEXT_CHARS (2000), LAMBDASLIM_MAX_TOKENS
(truncation, 128), LAMBDASLIM_THREADS (default: one per vCPU Lambda grants the memory setting).

Events: a direct invoke whose payload is {"inputs": "a text"} or {"inputs": ["a", "b"]} (or the bare
text or list), or an API Gateway proxy event (REST v1 or HTTP v2) whose JSON body has that shape.
Answers {"statusCode": 200, "predictions": [{"label", "score", "scores"}]}; bad input gets status 400
and {"error": {"type": "BadRequest", "message": ...}}, a proxy body over Lambda's 6 MB payload limit
413 and {"error": {"type": "PayloadTooLarge", ...}} (Lambda itself refuses such a request before the
handler; a handler behind another front door may still see one). Proxy events get the same as a JSON body.
"""
from __future__ import annotations

import time

_INIT_START = time.perf_counter()  # Lambda's init phase: everything below runs once per execution environment

import base64  # noqa: E402
import binascii  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
from aws_lambda_powertools import Logger, Metrics  # noqa: E402
from aws_lambda_powertools.metrics import MetricUnit  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402

MODEL_DIR = Path(os.environ.get("LAMBDASLIM_MODEL_DIR") or Path(__file__).resolve().parent / "model")
MAX_BATCH = int(os.environ.get("LAMBDASLIM_MAX_BATCH", "32"))
MAX_TEXT_CHARS = int(os.environ.get("LAMBDASLIM_MAX_TEXT_CHARS", "2000"))
MAX_TOKENS = int(os.environ.get("LAMBDASLIM_MAX_TOKENS", "128"))
MB_PER_VCPU = 1769  # Lambda grants one full vCPU at 1,769 MB
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024  # a synchronous invoke's request payload
JSON_HEADERS = {"Content-Type": "application/json"}

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "lambdaslim"))
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "lambdaslim"))


class BadRequest(ValueError):
    """The caller's fault: answered with status 400 and this message."""

    status = 400


class PayloadTooLarge(BadRequest):
    status = 413


def intra_op_threads() -> int:
    """One thread per vCPU the memory setting buys: more threads than vCPUs only contend for the quota."""
    if os.environ.get("LAMBDASLIM_THREADS"):
        return int(os.environ["LAMBDASLIM_THREADS"])
    memory_mb = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", str(MB_PER_VCPU)))
    return max(1, min(os.cpu_count() or 1, math.ceil(memory_mb / MB_PER_VCPU)))


class Classifier:
    """Tokenizer + ONNX Runtime session; batch in, labels and softmax scores out."""

    def __init__(self, model_dir: Path, threads: int):
        config = json.loads((model_dir / "config.json").read_text())
        id2label = config["id2label"]
        self.labels = [id2label[str(i)] for i in range(len(id2label))]
        self.pad_id = int(config.get("pad_token_id") or 0)
        self.max_tokens = min(MAX_TOKENS, int(config.get("max_position_embeddings", MAX_TOKENS)))
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.no_padding()  # padded here, to the longest text of each request
        self.tokenizer.enable_truncation(self.max_tokens)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.session = ort.InferenceSession(str(model_dir / "model.onnx"), opts, providers=["CPUExecutionProvider"])
        self.input_names = {i.name for i in self.session.get_inputs()}
        self.threads = threads

    def feeds(self, texts: list[str]) -> dict[str, np.ndarray]:
        encodings = self.tokenizer.encode_batch(texts)
        width = max(len(e.ids) for e in encodings)
        ids = np.full((len(texts), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(texts), width), dtype=np.int64)
        types = np.zeros((len(texts), width), dtype=np.int64)
        for row, e in enumerate(encodings):
            n = len(e.ids)
            ids[row, :n], mask[row, :n], types[row, :n] = e.ids, e.attention_mask, e.type_ids
        arrays = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        return {name: arrays[name] for name in self.input_names}

    def predict(self, texts: list[str]) -> list[dict]:
        logits = self.session.run(None, self.feeds(texts))[0].astype(np.float64)
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        out = []
        for row in probs:
            best = int(row.argmax())
            out.append({"label": self.labels[best], "score": round(float(row[best]), 6),
                        "scores": {lab: round(float(p), 6) for lab, p in zip(self.labels, row)}})
        return out


def is_proxy_event(event) -> bool:
    """API Gateway REST (v1) and HTTP (v2) proxy events both carry requestContext (a GET may lack a body)."""
    return isinstance(event, dict) and "requestContext" in event


def proxy_payload(event: dict):
    body = event.get("body")
    if body is None or body == "":
        raise BadRequest('missing request body; send JSON like {"inputs": "a text"}')
    if not isinstance(body, str):
        raise BadRequest(f"body must be a string of JSON, not {type(body).__name__}")
    if len(body) > MAX_PAYLOAD_BYTES:  # checked before decoding: never parse what Lambda would not accept
        raise PayloadTooLarge(f"body has {len(body):,} characters; Lambda's payload limit is {MAX_PAYLOAD_BYTES:,} bytes")
    if event.get("isBase64Encoded"):
        try:
            body = base64.b64decode(body, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError) as e:  # ValueError: a non-ASCII character
            raise BadRequest(f"body is not valid base64-encoded UTF-8: {e}") from None
    try:
        return json.loads(body)
    except json.JSONDecodeError as e:
        raise BadRequest(f"body is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except RecursionError:
        raise BadRequest("body is not valid JSON: nested too deeply") from None
    except ValueError as e:  # e.g. an integer of more than 4,300 digits
        raise BadRequest(f"body is not valid JSON: {str(e)[:200]}") from None


def read_texts(payload) -> list[str]:
    """The texts of a payload: {"inputs": text | [texts]}, or a bare text or list of texts."""
    if isinstance(payload, dict):
        unknown = sorted(set(payload) - {"inputs"})
        if unknown:  # named in ASCII and cut short: a key may be megabytes long or hold a lone surrogate
            shown = ", ".join(ascii(k[:40]) for k in unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
            raise BadRequest(f"unknown field(s) [{shown}]; expected only 'inputs'")
        if "inputs" not in payload:
            raise BadRequest("missing field 'inputs' (a text or a list of texts)")
        payload = payload["inputs"]
    texts = [payload] if isinstance(payload, str) else payload
    if not isinstance(texts, list):
        raise BadRequest(f"'inputs' must be a text or a list of texts, not {type(texts).__name__}")
    if not texts:
        raise BadRequest("'inputs' is an empty list")
    if len(texts) > MAX_BATCH:
        raise BadRequest(f"{len(texts)} texts exceed the maximum batch of {MAX_BATCH}")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise BadRequest(f"inputs[{i}] must be a text, not {type(t).__name__}")
        if not t.strip():
            raise BadRequest(f"inputs[{i}] is empty")
        if len(t) > MAX_TEXT_CHARS:
            raise BadRequest(f"inputs[{i}] has {len(t)} characters; the maximum is {MAX_TEXT_CHARS}")
        try:
            t.encode("utf-8")
        except UnicodeEncodeError as e:  # a lone surrogate ("\ud800" in the JSON): no UTF-8 text holds one
            raise BadRequest(f"inputs[{i}] is not valid Unicode text ({e.reason} at character {e.start})") from None
    return texts


def respond(status: int, body: dict, proxy: bool) -> dict:
    if proxy:
        return {"statusCode": status, "headers": JSON_HEADERS, "body": json.dumps(body)}
    return {"statusCode": status, **body}


CLASSIFIER = Classifier(MODEL_DIR, intra_op_threads())
CLASSIFIER.predict(["warm-up"])  # the first run allocates buffers and picks kernels: pay it in init, not in a request
INIT_MS = (time.perf_counter() - _INIT_START) * 1000
logger.info("initialised", extra={"init_ms": round(INIT_MS, 1), "threads": CLASSIFIER.threads,
                                  "onnxruntime": ort.__version__, "labels": CLASSIFIER.labels})


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event, context):
    proxy = is_proxy_event(event)
    try:
        texts = read_texts(proxy_payload(event) if proxy else event)
    except BadRequest as e:
        metrics.add_metric(name="BadRequests", unit=MetricUnit.Count, value=1)
        logger.warning("bad request", extra={"reason": str(e), "status": e.status})
        return respond(e.status, {"error": {"type": type(e).__name__, "message": str(e)}}, proxy)
    t0 = time.perf_counter()
    predictions = CLASSIFIER.predict(texts)
    inference_ms = (time.perf_counter() - t0) * 1000
    metrics.add_metric(name="Texts", unit=MetricUnit.Count, value=len(texts))
    metrics.add_metric(name="InferenceTime", unit=MetricUnit.Milliseconds, value=round(inference_ms, 3))
    logger.info("classified", extra={"texts": len(texts), "inference_ms": round(inference_ms, 3)})
    return respond(200, {"predictions": predictions}, proxy)
