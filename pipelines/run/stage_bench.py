"""What fallback and sensitivity need of a run: execute a stage into a folder, measure a candidate."""
from __future__ import annotations

from pathlib import Path
from typing import Protocol

from lambdaslim.compressors.base import Artifact, StageConfigBase
from lambdaslim.data.splits import Split
from lambdaslim.records import Candidate


class StageBench(Protocol):
    """Implemented by run.session.Session; a small typed surface instead of the whole session."""

    @property
    def run_dir(self) -> Path: ...

    @property
    def max_length(self) -> int: ...

    def execute(self, step, cfg: StageConfigBase, inp: Artifact, input_key: str,
                folder: Path | None = None) -> tuple[Artifact, str, dict, bool]: ...

    def measure(self, step, artifact: Artifact, key: str, cfg, info: dict) -> Candidate: ...

    def ranking_split(self) -> tuple[str, Split]: ...
