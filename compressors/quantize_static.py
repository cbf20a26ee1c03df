"""Static int8 quantization with ONNX Runtime: int8 weights and int8 activations whose ranges are fixed
ahead of time by calibrating on the pipeline's calibration split (never the evaluation split).

Reference: Jacob et al., 2018, "Quantization and Training of Neural Networks for Efficient
Integer-Arithmetic-Only Inference" (CVPR); entropy calibration: Migacz, 2017, "8-bit Inference with
TensorRT" (GTC); percentile calibration: Wu et al., 2020, "Integer Quantization for Deep Learning
Inference: Principles and Empirical Evaluation" (arXiv:2004.09602).

The additive attention mask (0 where attended, the dtype's minimum elsewhere) and the scores it is
added to span ~1e38: one int8 scale for them zeroes every real score, and histogram calibration cannot
bin them ("Too many bins for data range"). Those tensors are left out of calibration and the nodes that
read or write them stay fp32, so minmax, entropy and percentile all work on unfused and fused graphs.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shutil
import tempfile
from pathlib import Path
from typing import Literal

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader
from pydantic import Field

from lambdaslim.compressors.base import (Artifact, NodeSelection, StageConfigBase, StageContext, StageError,
                                         StageResult, copy_side_files, register)
from lambdaslim.compressors.onnx_nodes import load_graph, node_names, weight_nodes
from lambdaslim.measure.peak_memory import PeakDuring
from lambdaslim.store.atomic import atomic_path, write_json_atomic


class QuantizeStaticConfig(NodeSelection, StageConfigBase):
    kind: Literal["quantize_static"] = "quantize_static"
    format: Literal["qdq", "qoperator"] = "qdq"
    per_channel: bool = False
    activation_type: Literal["quint8", "qint8"] = Field("quint8", description="u8 activations: ORT's x86 CPU advice")
    activation_symmetric: bool = False
    weight_symmetric: bool = True
    calibration_method: Literal["minmax", "entropy", "percentile"] = "minmax"
    calibration_samples: int = Field(256, gt=0, description="rows of data.calibration (fewer if it has fewer)")
    calibration_batch_size: int = Field(16, gt=0, le=1024)


def _op_types(cfg: QuantizeStaticConfig) -> list[str]:
    """The op types to quantize: the config's, else every one ORT's quantize_static supports (its default)."""
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    return sorted(cfg.op_types or set(QLinearOpsRegistry) | set(QDQRegistry))


def quantizable_nodes(artifact: Artifact, cfg: QuantizeStaticConfig) -> list[str]:
    """Nodes with a constant weight this config would quantize (op_types, include/exclude applied)."""
    from onnxruntime.quantization.registry import QLinearOpsRegistry

    ops = set(_op_types(cfg))
    if cfg.format == "qoperator":  # QDQ quantizes any listed op's inputs; QOperator only ops it has kernels for
        ops &= set(QLinearOpsRegistry)
    return cfg.selected(weight_nodes(load_graph(artifact.onnx_file), ops))


@register(QuantizeStaticConfig, accepts=("onnx",), produces="onnx", uses=("calibration",), nodes=quantizable_nodes)
def quantize_static(cfg: QuantizeStaticConfig, inp: Artifact, out: Path, ctx: StageContext) -> StageResult:
    from onnxruntime.quantization import CalibrationMethod

    if ctx.calibration is None:
        raise StageError("quantize_static: no calibration data; the pipeline must declare data.calibration")
    n = min(cfg.calibration_samples, len(ctx.calibration))
    if n == 0:
        raise StageError("quantize_static: data.calibration has no rows to calibrate on")
    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[cfg.calibration_method]
    op_types = _op_types(cfg)
    copy_side_files(inp.path, out)
    with tempfile.TemporaryDirectory(prefix=".calib-", dir=out) as tmp:
        model_file, preprocess = _pre_process(inp.onnx_file, Path(tmp) / "pre.onnx")
        model = onnx.load(str(model_file))
        cfg.check_node_names(node_names(model))
        mask_tensors, mask_nodes = _mask_path(model)
        reader = _TextBatches(inp.path, ctx.calibration.texts[:n], model, cfg.calibration_batch_size, ctx.max_length)
        ranges, cache = Path(tmp) / "ranges.json", _ranges_cache(ctx, inp, cfg, n, op_types)
        calib = _ranges(model_file, reader, method, op_types, mask_tensors, ranges, cache)
        _quantize(cfg, model_file, ranges, out / "model.onnx", method, op_types, mask_nodes)
    quantized, qdq_ops = _quantized_nodes(model, load_graph(out / "model.onnx"), op_types)
    if qdq_ops == 0:  # both formats quantize and dequantize at the edges of every int8 region
        raise StageError(f"quantize_static: no node was quantized ({cfg.format}, op_types={cfg.op_types}, "
                         f"include_nodes={cfg.include_nodes})")
    info = {"calibration_method": cfg.calibration_method, "calibration_samples": n, "preprocess": preprocess,
            **calib, "mask_path_nodes_fp32": len(mask_nodes), "int8_weight_nodes": quantized, "qdq_nodes": qdq_ops}
    if n < cfg.calibration_samples:
        info["calibration_note"] = f"data.calibration has {len(ctx.calibration)} rows < {cfg.calibration_samples} asked"
    return StageResult(Artifact(out, "onnx"), info)


def _ranges(model_file: Path, reader: "_TextBatches", method, op_types: list[str], mask_tensors: set[str], dst: Path,
            cache: Path | None) -> dict:
    """Write the calibrated ranges of `model_file` to `dst`, from `cache` when it holds them; return what
    calibration records. Ranges depend on the input and the calibration only, not on which nodes are
    excluded: the fallback's trials and the sensitivity scan reuse them instead of recalibrating each time."""
    from onnxruntime.quantization import save_tensors_data

    if cache is not None and cache.with_suffix(".meta.json").exists():
        shutil.copyfile(cache, dst)
        return json.loads(cache.with_suffix(".meta.json").read_text()) | {"calibration_cached": True}
    with PeakDuring() as rss:
        save_tensors_data(_calibrate(model_file, dst.parent, method, op_types, mask_tensors, reader), dst)
    # RSS of this process, sampled every 5 ms while calibrating: the peak includes what it held before.
    calib = {"calibration_batches": reader.batches, "calibration_peak_rss_mb": rss.peak_mb,
             "calibration_rss_growth_mb": rss.growth_mb}
    if cache is not None:
        # Each file renamed into place whole (a killed or concurrent run never leaves half of one), the meta
        # file last: it marks the ranges complete.
        with atomic_path(cache) as part:
            shutil.copyfile(dst, part)
        write_json_atomic(cache.with_suffix(".meta.json"), calib)
    return calib


def _quantize(cfg: QuantizeStaticConfig, model_file: Path, ranges: Path, dst: Path, method, op_types: list[str],
              mask_nodes: set[str]) -> None:
    from onnxruntime.quantization import QuantFormat, QuantType
    from onnxruntime.quantization import quantize_static as ort_quantize_static

    try:
        ort_quantize_static(
            model_file, dst, calibration_data_reader=None, calibration_cache_path=ranges, calibrate_method=method,
            quant_format=QuantFormat.QDQ if cfg.format == "qdq" else QuantFormat.QOperator,
            op_types_to_quantize=op_types, per_channel=cfg.per_channel,
            activation_type=QuantType.QUInt8 if cfg.activation_type == "quint8" else QuantType.QInt8,
            weight_type=QuantType.QInt8, nodes_to_quantize=list(cfg.include_nodes or []) or None,
            nodes_to_exclude=sorted(set(cfg.exclude_nodes) | mask_nodes), use_external_data_format=False,
            extra_options={"ActivationSymmetric": cfg.activation_symmetric, "WeightSymmetric": cfg.weight_symmetric,
                           # Fused graphs carry outputs without type info; FLOAT is their type (optimum#2186).
                           "DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    except ValueError as e:
        if "Unable to get valid quantization scale" not in str(e):
            raise
        raise StageError(f"quantize_static: {str(e).splitlines()[0]} (a tensor without a calibrated "
                         f"range; exclude its node or limit op_types)") from None


def _ranges_cache(ctx: StageContext, inp: Artifact, cfg: QuantizeStaticConfig, n: int,
                  op_types: list[str]) -> Path | None:
    if ctx.cache_dir is None:
        return None
    st = inp.onnx_file.stat()
    key = hashlib.sha256(json.dumps([str(inp.onnx_file.resolve()), st.st_size, st.st_mtime_ns, cfg.calibration_method,
                                     sorted(op_types), n, cfg.calibration_batch_size, ctx.max_length,
                                     ctx.calibration.texts[:n]]).encode()).hexdigest()[:20]
    return ctx.cache_dir / f"calibration-{key}.json"


def _quantized_nodes(before: onnx.ModelProto, after: onnx.ModelProto, op_types: list[str]) -> tuple[int, int]:
    """Weight nodes whose weight is now int8 (QDQ: read through a DequantizeLinear of an int8 initializer;
    QOperator: replaced by a quantized op, or reading int8 directly), and the number of Q/DQ nodes."""
    int8 = {t.name for t in after.graph.initializer if t.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)}
    int8 |= {n.output[0] for n in after.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in int8}
    kept = {n.name: set(n.input) for n in after.graph.node}
    quantized = [w for w in weight_nodes(before, set(op_types)) if w not in kept or int8 & kept[w]]
    return len(quantized), sum(1 for n in after.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear"))


def _pre_process(src: Path, dst: Path) -> tuple[Path, str]:
    """ORT's recommended symbolic shape inference + basic optimization, so every tensor has a type and
    shape to calibrate (without it a fused graph's pooler input gets no range)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(src, dst, auto_merge=True)  # auto_merge: HF exports need merged symbolic dims
        return dst, "symbolic_shape+ort_basic"
    except Exception as e:  # noqa: BLE001 - SymbolicShapeInference raises a bare Exception; anything else re-raises
        if str(e) != "Incomplete symbolic shape inference":
            raise
    _remove_symbolic_dump(Path.cwd() / "sym_shape_infer_temp.onnx")
    quant_pre_process(src, dst, skip_symbolic_shape=True)
    return dst, "onnx_shape+ort_basic"


def _remove_symbolic_dump(dump: Path) -> None:
    """On failure SymbolicShapeInference saves its partial model (external data too) into the cwd."""
    if dump.is_file():
        for t in onnx.load(str(dump), load_external_data=False).graph.initializer:
            for entry in t.external_data:
                if entry.key == "location":
                    (dump.parent / entry.value).unlink(missing_ok=True)
        dump.unlink()


def _mask_path(model: onnx.ModelProto) -> tuple[set[str], set[str]]:
    """Float tensors computed from the attention mask alone, and the scores they are merged into (up to
    the Softmax); and the nodes that read or write them. Shapes count as constants."""
    graph = model.graph
    deps: dict[str, frozenset] = {i.name: frozenset([i.name]) for i in graph.input}
    masks = frozenset(i.name for i in graph.input if "mask" in i.name)
    only_mask, merged = set(), set()
    for node in graph.node:
        shape_only = node.op_type in ("Shape", "Size")
        d = frozenset() if shape_only else frozenset().union(*(deps.get(i, ()) for i in node.input))
        for o in node.output:
            deps[o] = d
        if masks and d and d <= masks:
            only_mask.update(node.output)
        elif node.op_type in ("Add", "Sub", "Mul", "Where", "Max", "Min") and any(i in only_mask for i in node.input):
            merged.update(node.output)
        elif node.op_type in _VIEW_OPS and node.input and node.input[0] in merged:
            merged.update(node.output)
    known = {v.name: v.type.tensor_type.elem_type for v in [*graph.input, *graph.value_info, *graph.output]}
    tensors = {t for t in only_mask | merged  # an untyped tensor counts as float: excluding it is the safe side
               if known.get(t, onnx.TensorProto.FLOAT) in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)}
    nodes = {n.name for n in graph.node if tensors & {*n.input, *n.output}}
    return tensors, nodes


_VIEW_OPS = ("Reshape", "Transpose", "Cast", "Squeeze", "Unsqueeze", "Identity", "Dropout", "Expand", "Flatten")


def _calibrate(model_file: Path, tmp: Path, method, op_types: list[str], skip: set[str], reader):
    """One batch per collect_data call: ranges and histograms merge across calls, so only one batch's
    activations are held at a time (ORT's calibrators otherwise keep every batch until the end)."""
    from onnxruntime.quantization.calibrate import (CalibrationMethod, EntropyCalibrater, MinMaxCalibrater,
                                                    PercentileCalibrater)

    base = {CalibrationMethod.MinMax: MinMaxCalibrater, CalibrationMethod.Entropy: EntropyCalibrater,
            CalibrationMethod.Percentile: PercentileCalibrater}[method]

    class WithoutMask(base):
        def select_tensors_to_calibrate(self, model):
            tensors, value_infos = super().select_tensors_to_calibrate(model)
            return tensors - skip, value_infos

    calibrator = WithoutMask(model_file, op_types, augmented_model_path=str(tmp / "augmented.onnx"),
                             **({"symmetric": True} if method == CalibrationMethod.Percentile else {}))  # as ORT
    calibrator.augment_graph()
    calibrator.create_inference_session()
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # histogram calibrators print progress per batch
            for feeds in reader:
                calibrator.collect_data(_Once(feeds))
            return calibrator.compute_data()
    except ValueError as e:
        if "Too many bins" not in str(e):
            raise
        raise StageError(f"quantize_static: {method.name.lower()} calibration cannot histogram a tensor with an "
                         f"extreme range ({str(e).splitlines()[0]}); use calibration_method: minmax") from None


class _TextBatches(CalibrationDataReader):
    """Streams calibration rows: tokenizes one batch per get_next() with the artifact's own tokenizer,
    padded to the longest row of that batch (at most max_length)."""

    def __init__(self, model_dir: Path, texts: list[str], model: onnx.ModelProto, batch_size: int, max_length: int):
        from transformers import AutoTokenizer

        self.tok = AutoTokenizer.from_pretrained(model_dir)
        self.texts, self.batch_size, self.max_length, self.batches = texts, batch_size, max_length, 0
        self.inputs = {i.name: onnx.helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type)
                       for i in model.graph.input}

    def get_next(self) -> dict | None:
        start = self.batches * self.batch_size
        if start >= len(self.texts):
            return None
        enc = self.tok(self.texts[start:start + self.batch_size], padding=True, truncation=True,
                       max_length=self.max_length, return_tensors="np")
        self.batches += 1
        missing = set(self.inputs) - set(enc)
        if missing:
            raise StageError(f"quantize_static: the tokenizer gives no {sorted(missing)} that the model needs")
        return {k: np.asarray(enc[k], dtype=dt) for k, dt in self.inputs.items()}


class _Once(CalibrationDataReader):
    def __init__(self, feeds: dict):
        self.feeds = feeds

    def get_next(self) -> dict | None:
        feeds, self.feeds = self.feeds, None
        return feeds
