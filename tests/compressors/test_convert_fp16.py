import os

import numpy as np
import onnx
import pytest

from lambdaslim.compressors import StageError
from lambdaslim.compressors.convert_fp16 import ConvertFp16Config, convert_fp16
from tests.compressors.helpers import onnx_logits
from tests.conftest import stage_context

FLOATS = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)


def test_fp16_halves_the_weights_and_keeps_io_types(tiny_onnx, tmp_path):
    res = convert_fp16(ConvertFp16Config(kind="convert_fp16"), tiny_onnx, tmp_path, stage_context())
    model = onnx.load(str(res.artifact.onnx_file))
    onnx.checker.check_model(model)
    weights = [t for t in model.graph.initializer if t.data_type in FLOATS]
    assert weights and all(t.data_type == onnx.TensorProto.FLOAT16 for t in weights)
    assert {i.type.tensor_type.elem_type for i in model.graph.input} == {onnx.TensorProto.INT64}
    assert [o.type.tensor_type.elem_type for o in model.graph.output] == [onnx.TensorProto.FLOAT]
    assert res.info["fp16_initializers"] == len(weights) and res.info["fp32_initializers"] == 0
    assert os.path.getsize(res.artifact.onnx_file) < os.path.getsize(tiny_onnx.onnx_file)
    fp16, labels = onnx_logits(res.artifact)
    fp32, _ = onnx_logits(tiny_onnx)
    assert fp16.dtype == np.float32
    np.testing.assert_allclose(fp16, fp32, atol=2e-2)  # half precision: ~3 significant digits
    assert (fp16.argmax(-1) == labels).mean() > 0.85
    assert (tmp_path / "tokenizer.json").exists()


def test_op_block_list_keeps_those_ops_in_fp32(tiny_onnx, tmp_path):
    res = convert_fp16(ConvertFp16Config(kind="convert_fp16", op_block_list=["LayerNormalization"]), tiny_onnx,
                       tmp_path, stage_context())
    model = onnx.load(str(res.artifact.onnx_file))
    types = {t.name: t.data_type for t in model.graph.initializer}
    norms = [n for n in model.graph.node if n.op_type == "LayerNormalization"]
    assert norms and all(types[i] == onnx.TensorProto.FLOAT for n in norms for i in n.input[1:] if i in types)
    assert res.info["fp32_initializers"] > 0 and res.info["blocked_op_types"] == "LayerNormalization"
    logits, labels = onnx_logits(res.artifact)
    assert (logits.argmax(-1) == labels).mean() > 0.85


def test_unknown_node_in_the_block_list_is_a_one_line_error(tiny_onnx, tmp_path):
    with pytest.raises(StageError, match="node_block_list names 1 node") as err:
        convert_fp16(ConvertFp16Config(kind="convert_fp16", node_block_list=["nope"]), tiny_onnx, tmp_path,
                     stage_context())
    assert "\n" not in str(err.value)
