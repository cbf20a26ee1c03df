"""A loaded pipeline: its spec, where it lives, its target, and its variants' chains.

Relative paths resolve against the project root: the nearest folder above the pipeline file that
holds dvc.yaml, pyproject.toml or .git (else the file's own folder).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lambdaslim.aws.targets import LambdaTarget
from lambdaslim.spec.models import PipelineSpec

@dataclass(frozen=True)
class Pipeline:
    spec: PipelineSpec
    file: Path
    root: Path
    target: LambdaTarget
    target_file: Path
    variants: tuple = ()  # lambdaslim.spec.variants.Variant, each a full chain; empty without `variants:`

    @property
    def name(self) -> str:
        return self.spec.name or self.file.stem

    def resolve(self, path: str) -> Path:
        p = Path(path)
        return p if p.is_absolute() else (self.root / p)

    @property
    def run_dir(self) -> Path:
        return self.resolve(self.spec.artifacts_dir) / self.name

    def stage_names(self) -> list[str]:
        return stage_names(self.spec.stages)

    def all_stages(self) -> list:
        """Every stage config the pipeline may run: its own, and each variant's chain."""
        return list(self.spec.stages) + [st for v in self.variants for st in v.stages]


def stage_names(stages) -> list[str]:
    """Display names of a chain: the explicit name, else the kind (suffixed _2, _3 when repeated)."""
    names, seen = [], {}
    for st in stages:
        base = st.name or st.kind
        seen[base] = seen.get(base, 0) + 1
        names.append(base if seen[base] == 1 else f"{base}_{seen[base]}")
    return names


def project_root(file: Path) -> Path:
    for folder in [file.parent, *file.parent.parents]:
        if any((folder / m).exists() for m in ("dvc.yaml", "pyproject.toml", ".git")):
            return folder
    return file.parent
