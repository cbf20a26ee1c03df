"""Export a PyTorch Hugging Face classifier to ONNX through optimum-onnx's exporter.

Reference: ONNX — Open Neural Network Exchange (Bai, Lu, Zhang et al., 2019, https://onnx.ai);
exporter: Hugging Face Optimum (https://github.com/huggingface/optimum-onnx). The exported graph is
checked against PyTorch on real inputs and the max abs difference of the logits is recorded.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from lambdaslim.compressors.base import Artifact, StageConfigBase, StageContext, StageError, StageResult, register


class ExportOnnxConfig(StageConfigBase):
    kind: Literal["export_onnx"] = "export_onnx"
    opset: int = Field(17, ge=11, le=21)
    check_samples: int = Field(8, ge=1, le=256, description="real inputs compared with PyTorch")
    max_abs_diff: float = Field(1e-3, gt=0, description="logit difference above which the export is wrong")


@register(ExportOnnxConfig, accepts=("pytorch",), produces="onnx", uses=("samples",))
def export_onnx(cfg: ExportOnnxConfig, inp: Artifact, out: Path, ctx: StageContext) -> StageResult:
    from optimum.exporters.onnx import main_export

    # Optimum's own validation uses random inputs; ours below uses real sentences instead.
    main_export(str(inp.path), out, task="text-classification", opset=cfg.opset, device="cpu",
                do_validation=False, local_files_only=True, library_name="transformers")
    produced = out / "model.onnx"
    if not produced.exists():
        raise StageError(f"export_onnx: optimum wrote no model.onnx into {out}")
    diff = _max_abs_diff(inp.path, produced, ctx.sample_texts[: cfg.check_samples], ctx.max_length)
    if diff > cfg.max_abs_diff:
        raise StageError(f"export_onnx: ONNX logits differ from PyTorch by {diff:.2e} > {cfg.max_abs_diff:.0e}")
    return StageResult(Artifact(out, "onnx"), {"max_abs_diff": diff, "opset": cfg.opset})


def _max_abs_diff(model_dir: Path, onnx_file: Path, texts: list[str], max_length: int) -> float:
    import onnxruntime as ort
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    worst = 0.0
    for text in texts:  # batch 1, as Lambda serves it: no padding to hide a mismatch
        enc = tok(text, truncation=True, max_length=max_length, return_tensors="np")
        feeds = {k: v.astype(np.int64) for k, v in enc.items() if k in names}
        onnx_logits = session.run(None, feeds)[0]
        with torch.inference_mode():
            torch_logits = model(**{k: torch.from_numpy(v) for k, v in feeds.items()}).logits.numpy()
        worst = max(worst, float(np.abs(onnx_logits - torch_logits).max()))
    return worst
