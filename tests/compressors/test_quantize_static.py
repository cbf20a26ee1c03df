import dataclasses

import numpy as np
import onnx
import pytest
from pydantic import ValidationError

from lambdaslim.compressors import StageError
from lambdaslim.compressors import quantize_static as qs
from lambdaslim.compressors.optimize_onnx import OptimizeOnnxConfig, optimize_onnx
from lambdaslim.compressors.quantize_static import QuantizeStaticConfig, quantizable_nodes, quantize_static
from lambdaslim.cli import main
from lambdaslim.data.splits import Split
from lambdaslim.testing.tiny import make_rows
from tests.compressors.helpers import onnx_logits, op_types
from tests.conftest import stage_context


def calibration_context(n: int = 64):
    rows = make_rows(n, 12)  # the tiny project's calibration rows; onnx_logits scores other rows (seed 99)
    return dataclasses.replace(stage_context(), calibration=Split([t for t, _ in rows], np.array([y for _, y in rows])))


def cfg(**kw) -> QuantizeStaticConfig:
    return QuantizeStaticConfig(kind="quantize_static", **kw)


def accuracy(artifact) -> float:
    logits, labels = onnx_logits(artifact)
    return float((logits.argmax(-1) == labels).mean())


def int8_weight_nodes(artifact) -> set[str]:
    """QDQ: nodes whose weight is read through a DequantizeLinear of an int8 initializer."""
    graph = onnx.load(str(artifact.onnx_file)).graph
    inits = {t.name for t in graph.initializer}
    weight_dq = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits}
    return {n.name for n in graph.node if weight_dq & set(n.input)}


def test_qdq_int8_calibrates_on_the_calibration_split_and_keeps_accuracy(tiny_onnx, tmp_path):
    res = quantize_static(cfg(), tiny_onnx, tmp_path, calibration_context(64))
    onnx.checker.check_model(onnx.load(str(res.artifact.onnx_file)))
    assert {"QuantizeLinear", "DequantizeLinear"} <= op_types(res.artifact)
    assert accuracy(res.artifact) > 0.85
    info = res.info
    assert info["calibration_samples"] == 64 and info["calibration_batches"] == 4  # 64 rows < 256 asked: all used
    assert "64 rows < 256" in info["calibration_note"]
    assert info["calibration_peak_rss_mb"] > 0 and info["calibration_rss_growth_mb"] >= 0
    assert info["mask_path_nodes_fp32"] > 0 and info["int8_weight_nodes"] == len(quantizable_nodes(tiny_onnx, cfg()))
    assert (tmp_path / "tokenizer.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # calibration files removed


def test_fewer_samples_than_rows_uses_the_first_ones_in_batches(tiny_onnx, tmp_path):
    res = quantize_static(cfg(calibration_samples=20, calibration_batch_size=8), tiny_onnx, tmp_path,
                          calibration_context(64))
    assert res.info["calibration_samples"] == 20 and res.info["calibration_batches"] == 3
    assert "calibration_note" not in res.info


def test_qoperator_format_uses_quantized_operators(tiny_onnx, tmp_path):
    res = quantize_static(cfg(format="qoperator"), tiny_onnx, tmp_path, calibration_context())
    ops = op_types(res.artifact)
    assert "QLinearMatMul" in ops and "MatMul" not in ops
    assert accuracy(res.artifact) > 0.85


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_histogram_calibration_works_because_the_mask_path_is_left_out(tiny_onnx, tmp_path, method):
    res = quantize_static(cfg(calibration_method=method), tiny_onnx, tmp_path, calibration_context())
    assert res.info["calibration_method"] == method and res.info["mask_path_nodes_fp32"] > 0
    assert accuracy(res.artifact) > 0.85


def test_mask_path_is_the_additive_mask_and_the_scores_and_softmax_it_reaches(tiny_onnx):
    tensors, nodes = qs._mask_path(onnx.load(str(tiny_onnx.onnx_file)))
    graph = onnx.load(str(tiny_onnx.onnx_file)).graph
    kinds = {n.op_type for n in graph.node if n.name in nodes}
    assert "Softmax" in kinds and "Add" in kinds  # scores + mask, and the softmax reading it
    assert not {"MatMul", "Gemm", "LayerNormalization"} & kinds  # never a weight or the hidden states


def test_an_unbinnable_tensor_gives_a_one_line_error_naming_minmax(tiny_onnx, tmp_path, monkeypatch):
    # Without the mask exclusion, entropy calibration meets the ~1e38 mask values: ORT's "Too many bins".
    monkeypatch.setattr(qs, "_mask_path", lambda model: (set(), set()))
    with pytest.raises(StageError, match="Too many bins.*calibration_method: minmax") as err:
        quantize_static(cfg(calibration_method="entropy"), tiny_onnx, tmp_path, calibration_context())
    assert "\n" not in str(err.value)


def test_fused_graph_quantizes_too(tiny_onnx, tmp_path):
    fused = optimize_onnx(OptimizeOnnxConfig(kind="optimize_onnx", level=2), tiny_onnx, tmp_path / "opt",
                          stage_context()).artifact
    res = quantize_static(cfg(), fused, tmp_path / "q", calibration_context())
    assert res.info["preprocess"] == "symbolic_shape+ort_basic"  # shapes let the pooler input be calibrated
    assert "Attention" in op_types(res.artifact) and accuracy(res.artifact) > 0.85


def test_failed_symbolic_shape_inference_falls_back_and_leaves_no_dump(tiny_onnx, tmp_path, monkeypatch):
    from onnxruntime.quantization import shape_inference

    real = shape_inference.quant_pre_process
    # Without auto_merge, symbolic shape inference really fails on the HF export and dumps into the cwd.
    monkeypatch.setattr(shape_inference, "quant_pre_process",
                        lambda src, dst, auto_merge=False, **kw: real(src, dst, **kw))
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    res = quantize_static(cfg(), tiny_onnx, tmp_path / "q", calibration_context())
    assert res.info["preprocess"] == "onnx_shape+ort_basic" and accuracy(res.artifact) > 0.85
    assert list((tmp_path / "cwd").iterdir()) == []


def test_quantizable_nodes_are_weight_nodes_in_the_graph(tiny_onnx):
    graph = onnx.load(str(tiny_onnx.onnx_file)).graph
    kinds = {n.name: n.op_type for n in graph.node}
    nodes = quantizable_nodes(tiny_onnx, cfg())
    assert nodes and all(n in kinds for n in nodes)
    assert {kinds[n] for n in nodes} <= {"MatMul", "Gemm", "Gather"}
    only_matmul = quantizable_nodes(tiny_onnx, cfg(op_types=["MatMul"]))
    assert only_matmul and {kinds[n] for n in only_matmul} == {"MatMul"}
    assert quantizable_nodes(tiny_onnx, cfg(op_types=["MatMul"], exclude_nodes=only_matmul[:1])) == only_matmul[1:]
    assert quantizable_nodes(tiny_onnx, cfg(include_nodes=only_matmul[:2])) == only_matmul[:2]


def test_include_nodes_quantizes_only_those(tiny_onnx, tmp_path):
    nodes = quantizable_nodes(tiny_onnx, cfg(op_types=["MatMul"]))
    res = quantize_static(cfg(include_nodes=[nodes[0]]), tiny_onnx, tmp_path, calibration_context())
    assert int8_weight_nodes(res.artifact) & set(quantizable_nodes(tiny_onnx, cfg())) == {nodes[0]}


def test_exclude_nodes_stay_fp32(tiny_onnx, tmp_path):
    nodes = quantizable_nodes(tiny_onnx, cfg(op_types=["MatMul"]))
    res = quantize_static(cfg(op_types=["MatMul"], exclude_nodes=[nodes[0]]), tiny_onnx, tmp_path,
                          calibration_context())
    quantized = int8_weight_nodes(res.artifact)
    assert nodes[0] not in quantized and set(nodes[1:]) <= quantized


@pytest.mark.parametrize("update, message", [
    ({"exclude_nodes": ["no/such/node"]}, "exclude_nodes names 1 node"),
    ({"include_nodes": []}, "include_nodes is empty"),
])
def test_bad_node_lists_give_one_line_errors(tiny_onnx, tmp_path, update, message):
    with pytest.raises(StageError, match=message) as err:
        quantize_static(cfg(**update), tiny_onnx, tmp_path, calibration_context())
    assert "\n" not in str(err.value)


def test_no_calibration_split_is_a_one_line_error(tiny_onnx, tmp_path):
    with pytest.raises(StageError, match="must declare data.calibration") as err:
        quantize_static(cfg(), tiny_onnx, tmp_path, stage_context())
    assert "\n" not in str(err.value)


def test_an_empty_calibration_split_is_a_one_line_error(tiny_onnx, tmp_path):
    ctx = dataclasses.replace(stage_context(), calibration=Split([], np.array([], dtype=np.int64)))
    with pytest.raises(StageError, match="no rows") as err:
        quantize_static(cfg(), tiny_onnx, tmp_path, ctx)
    assert "\n" not in str(err.value)


def test_config_is_strict():
    with pytest.raises(ValidationError, match="calibration_samples"):
        cfg(calibration_samples=0)
    with pytest.raises(ValidationError, match="calibration_method"):
        cfg(calibration_method="kl")
    with pytest.raises(ValidationError, match="extra"):
        cfg(per_chanel=True)
    with pytest.raises(ValidationError, match="exclude_nodes"):  # strict: a node list, not one name
        cfg(exclude_nodes="a")


def test_pipeline_file_accepts_the_new_kinds(make_project, capsys):
    file = make_project("  - kind: export_onnx\n"
                        "  - kind: quantize_static\n    calibration_method: entropy\n    exclude_nodes: [a]\n"
                        "  - kind: quantize_weights_int4\n    block_size: 64\n"
                        "  - kind: convert_fp16\n    op_block_list: [LayerNormalization]\n")
    assert main(["validate", str(file)]) == 0
    assert "quantize_static -> quantize_weights_int4 -> convert_fp16" in capsys.readouterr().out
