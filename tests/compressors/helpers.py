"""Run an ONNX artifact on real tiny-task sentences and compare it with its input."""
import numpy as np
import onnx
import onnxruntime as ort
from transformers import AutoTokenizer

from lambdaslim.testing.tiny import make_rows


def onnx_logits(artifact, n: int = 64) -> tuple[np.ndarray, np.ndarray]:
    rows = make_rows(n, 99)
    tok = AutoTokenizer.from_pretrained(artifact.path)
    sess = ort.InferenceSession(str(artifact.onnx_file), providers=["CPUExecutionProvider"])
    names = {i.name for i in sess.get_inputs()}
    enc = tok([t for t, _ in rows], padding=True, return_tensors="np")
    logits = sess.run(None, {k: v.astype(np.int64) for k, v in enc.items() if k in names})[0]
    return logits, np.array([y for _, y in rows])


def op_types(artifact) -> set[str]:
    return {n.op_type for n in onnx.load(str(artifact.onnx_file)).graph.node}
