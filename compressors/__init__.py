"""Compression techniques, one per module, registered by `kind` (see lambdaslim.compressors.base.register)."""
from lambdaslim.compressors.base import Artifact, StageContext, StageError, StageResult, TECHNIQUES, Technique

# One import line per technique: importing a module registers it.
from lambdaslim.compressors import export_onnx  # noqa: E402,F401
from lambdaslim.compressors import optimize_onnx  # noqa: E402,F401
from lambdaslim.compressors import quantize_dynamic  # noqa: E402,F401
from lambdaslim.compressors import quantize_static  # noqa: E402,F401
from lambdaslim.compressors import quantize_weights_int4  # noqa: E402,F401
from lambdaslim.compressors import convert_fp16  # noqa: E402,F401
from lambdaslim.compressors import drop_layers  # noqa: E402,F401
from lambdaslim.compressors import distill  # noqa: E402,F401
from lambdaslim.compressors import prune_structured  # noqa: E402,F401
from lambdaslim.compressors import prune_magnitude  # noqa: E402,F401

__all__ = ["TECHNIQUES", "Artifact", "StageContext", "StageError", "StageResult", "Technique"]
