"""Run in a fresh interpreter: load one artifact with its own runtime only, infer once, print peak RSS.

Usage: python -m pipelines.memprobe ARTIFACT_DIR FORMAT THREADS MAX_LENGTH TEXT
"""
import json
import resource
import sys
import time


def main() -> None:
    path, fmt, threads, max_length, text = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    t0 = time.perf_counter()
    from tokenizers import Tokenizer  # what a Lambda handler uses; no transformers for onnx

    import numpy as np

    if fmt == "onnx":
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        session = ort.InferenceSession(f"{path}/model.onnx", opts, providers=["CPUExecutionProvider"])
        tok = Tokenizer.from_file(f"{path}/tokenizer.json")
        tok.enable_truncation(max_length)
        enc = tok.encode(text)
        names = {i.name for i in session.get_inputs()}
        feeds = {"input_ids": [enc.ids], "attention_mask": [enc.attention_mask], "token_type_ids": [enc.type_ids]}
        session.run(None, {k: np.array(v, dtype=np.int64) for k, v in feeds.items() if k in names})
    else:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        torch.set_num_threads(threads)
        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModelForSequenceClassification.from_pretrained(path).eval()
        with torch.inference_mode():
            model(**tok(text, truncation=True, max_length=max_length, return_tensors="pt"))
    init_s = time.perf_counter() - t0
    print(json.dumps({"peak_rss_mb": round(peak_rss_kb() / 1024, 1), "init_s": round(init_s, 3)}))


def peak_rss_kb() -> int:
    """High-water mark of this process's memory. ru_maxrss would be wrong here: Linux carries it over
    exec from the parent, so a probe spawned by a 600 MB runner would report 600 MB."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):  # not Linux: fall back to getrusage (no exec carry-over on macOS)
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


if __name__ == "__main__":
    main()
