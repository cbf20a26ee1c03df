"""Run in a fresh interpreter: load one artifact with its own runtime only, then print the peak RSS after a
typical request (one text) and after the largest request the handler accepts.

Usage: python -m lambdaslim.measure.memprobe ARTIFACT_DIR FORMAT THREADS MAX_LENGTH TEXT
"""
import json
import sys
import time


def _onnx_runner(path: str, threads: int, max_length: int):
    import numpy as np
    import onnxruntime as ort
    from tokenizers import Tokenizer  # what a Lambda handler uses; no transformers for onnx

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    session = ort.InferenceSession(f"{path}/model.onnx", opts, providers=["CPUExecutionProvider"])
    tok = Tokenizer.from_file(f"{path}/tokenizer.json")
    tok.enable_truncation(max_length)
    tok.enable_padding()  # padded to the longest text of the request, as the handler does
    names = {i.name for i in session.get_inputs()}

    def run(texts: list[str]) -> None:
        encs = tok.encode_batch(texts)
        feeds = {"input_ids": [e.ids for e in encs], "attention_mask": [e.attention_mask for e in encs],
                 "token_type_ids": [e.type_ids for e in encs]}
        session.run(None, {k: np.array(v, dtype=np.int64) for k, v in feeds.items() if k in names})

    return run


def _torch_runner(path: str, threads: int, max_length: int):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.set_num_threads(threads)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()

    def run(texts: list[str]) -> None:
        with torch.inference_mode():
            model(**tok(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt"))

    return run


def main() -> None:
    from lambdaslim.measure.peak_memory import peak_rss_mb
    from lambdaslim.packaging.request_limits import largest_request

    path, fmt, threads, max_length, text = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    t0 = time.perf_counter()
    run = (_onnx_runner if fmt == "onnx" else _torch_runner)(path, threads, max_length)
    run([text])
    init_s = time.perf_counter() - t0
    typical = peak_rss_mb()
    run(largest_request(text))  # the memory gate holds at the handler's limits, not only at one sentence
    print(json.dumps({"peak_rss_mb": round(peak_rss_mb(), 1), "peak_rss_typical_mb": round(typical, 1),
                      "init_s": round(init_s, 3)}))


if __name__ == "__main__":
    main()
