"""The same classifier served the usual way, with torch + transformers: the baseline a package is compared with.

Never shipped. It exists so the cold-start gain of handler.py is measured side by side, not claimed:
same events ({"inputs": text | [texts]}), same Powertools logging and metrics, same warm-up at init,
same threads; only the inference stack differs. The fp32 PyTorch model directory is LAMBDASLIM_MODEL_DIR.
"""
from __future__ import annotations

import time

_INIT_START = time.perf_counter()

import math  # noqa: E402
import os  # noqa: E402

import torch  # noqa: E402
from aws_lambda_powertools import Logger, Metrics  # noqa: E402
from aws_lambda_powertools.metrics import MetricUnit  # noqa: E402
from transformers import AutoModelForSequenceClassification, AutoTokenizer  # noqa: E402

MODEL_DIR = os.environ["LAMBDASLIM_MODEL_DIR"]
MAX_TOKENS = int(os.environ.get("LAMBDASLIM_MAX_TOKENS", "128"))
MB_PER_VCPU = 1769

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "lambdaslim-torch"))
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "lambdaslim"))

memory_mb = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", str(MB_PER_VCPU)))
torch.set_num_threads(int(os.environ.get("LAMBDASLIM_THREADS") or max(1, math.ceil(memory_mb / MB_PER_VCPU))))
TOKENIZER = AutoTokenizer.from_pretrained(MODEL_DIR)
MODEL = AutoModelForSequenceClassification.from_pretrained(MODEL_DIR).eval()
LABELS = [MODEL.config.id2label[i] for i in range(MODEL.config.num_labels)]
MAX_LENGTH = min(MAX_TOKENS, MODEL.config.max_position_embeddings)


def predict(texts: list[str]) -> list[dict]:
    enc = TOKENIZER(texts, padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
    with torch.inference_mode():
        probs = MODEL(**enc).logits.double().softmax(-1).numpy()
    return [{"label": LABELS[int(row.argmax())], "score": round(float(row.max()), 6),
             "scores": {lab: round(float(p), 6) for lab, p in zip(LABELS, row)}} for row in probs]


predict(["warm-up"])
INIT_MS = (time.perf_counter() - _INIT_START) * 1000
logger.info("initialised", extra={"init_ms": round(INIT_MS, 1), "torch": torch.__version__})


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event, context):
    inputs = event["inputs"]
    texts = [inputs] if isinstance(inputs, str) else inputs
    predictions = predict(texts)
    metrics.add_metric(name="Texts", unit=MetricUnit.Count, value=len(texts))
    return {"statusCode": 200, "predictions": predictions}
