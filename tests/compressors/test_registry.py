from typing import Literal

import pytest

from compressors import REGISTRY
from compressors.base import StageConfigBase, register


def test_registry_holds_the_spine_techniques_with_their_formats():
    assert {"export_onnx", "optimize_onnx", "quantize_dynamic"} <= set(REGISTRY)
    assert REGISTRY["export_onnx"].accepts == ("pytorch",) and REGISTRY["export_onnx"].produces == "onnx"
    assert REGISTRY["quantize_dynamic"].accepts == ("onnx",)


def test_duplicate_kind_raises():
    class DupConfig(StageConfigBase):
        kind: Literal["export_onnx"] = "export_onnx"

    with pytest.raises(ValueError, match="already registered"):
        register(DupConfig, accepts=("pytorch",), produces="onnx")(lambda *a: None)


def test_config_without_literal_kind_is_refused():
    class NoKind(StageConfigBase):
        kind: str

    with pytest.raises(TypeError):
        register(NoKind, accepts=("onnx",), produces="onnx")


def test_code_version_changes_with_module_source():
    versions = {t.code_version for t in REGISTRY.values()}
    assert len(versions) == len(REGISTRY)  # one per module, so editing one invalidates only its outputs


def test_configs_are_frozen_and_forbid_extra_keys():
    cfg_cls = REGISTRY["quantize_dynamic"].config_cls
    cfg = cfg_cls(kind="quantize_dynamic")
    with pytest.raises(Exception):
        cfg.per_channel = True
    with pytest.raises(Exception, match="extra"):
        cfg_cls(kind="quantize_dynamic", per_chanel=True)
