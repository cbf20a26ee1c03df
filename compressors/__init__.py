"""Compression techniques, one per module, registered by `kind` (see compressors.base.register)."""
from compressors.base import REGISTRY, Artifact, StageContext, StageError, StageResult, Technique

# One import line per technique: importing a module registers it.
from compressors import export_onnx  # noqa: E402,F401
from compressors import optimize_onnx  # noqa: E402,F401
from compressors import quantize_dynamic  # noqa: E402,F401
from compressors import quantize_static  # noqa: E402,F401
from compressors import quantize_weights_int4  # noqa: E402,F401
from compressors import convert_fp16  # noqa: E402,F401
from compressors import drop_layers  # noqa: E402,F401
from compressors import distill  # noqa: E402,F401
from compressors import prune_structured  # noqa: E402,F401
from compressors import prune_magnitude  # noqa: E402,F401

__all__ = ["REGISTRY", "Artifact", "StageContext", "StageError", "StageResult", "Technique"]
