"""Load a candidate artifact for inference: ONNX Runtime for onnx, PyTorch for the fp32 baseline."""
from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from lambdaslim.compressors.base import Artifact


class Predictor(Protocol):
    def __call__(self, feeds: dict[str, np.ndarray]) -> np.ndarray: ...


def load_tokenizer(artifact_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(artifact_dir)


def open_predictor(artifact: Artifact, threads: int) -> Predictor:
    """A fresh runtime session limited to `threads` intra-op threads (the target's vCPUs)."""
    if artifact.format == "onnx":
        return _onnx_predictor(artifact.onnx_file, threads)
    return _torch_predictor(artifact.path, threads)


def _onnx_predictor(onnx_file: Path, threads: int) -> Predictor:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(str(onnx_file), opts, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]

    def predict(feeds: dict[str, np.ndarray]) -> np.ndarray:
        return session.run(None, {n: feeds[n].astype(np.int64) for n in names if n in feeds})[0]

    return predict


def _torch_predictor(model_dir: Path, threads: int) -> Predictor:
    import torch
    from transformers import AutoModelForSequenceClassification

    torch.set_num_threads(threads)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()

    def predict(feeds: dict[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            return model(**{k: torch.from_numpy(v.astype(np.int64)) for k, v in feeds.items()}).logits.numpy()

    return predict
