"""The tracking interface the runner and selection talk to; NullTracker records nothing."""
from __future__ import annotations

from pathlib import Path
from typing import Protocol

from lambdaslim.records import Candidate


class Tracker(Protocol):
    def start_pipeline(self, name: str, params: dict, tags: dict) -> str: ...
    def log_candidate(self, cand: Candidate, record_file: Path, model_dir: Path | None,
                      parent_run_id: str | None = None) -> str: ...
    def log_report(self, name: str, params: dict, metrics: dict, files: list[Path], tags: dict | None = None,
                   parent_run_id: str | None = None) -> str: ...
    def log_files(self, files: list[Path]) -> None: ...
    def candidate_run(self, cand: Candidate) -> str | None: ...
    def register_candidate(self, name: str, cand: Candidate, tags: dict, run_id: str | None,
                           model_dir: Path, description: str = "") -> dict | None: ...
    def start_variant(self, name: str, params: dict, tags: dict) -> str: ...
    def end_variant(self, run_id: str, final: Candidate | None, failed: bool) -> None: ...
    def end_pipeline(self, metrics: dict, tags: dict, failed: bool) -> None: ...


class NullTracker:
    """For notebooks and quick runs that should leave no trace in a store."""

    def start_pipeline(self, name: str, params: dict, tags: dict) -> str:
        return ""

    def log_candidate(self, cand: Candidate, record_file: Path, model_dir: Path | None,
                      parent_run_id: str | None = None) -> str:
        return ""

    def log_report(self, name: str, params: dict, metrics: dict, files: list[Path], tags: dict | None = None,
                   parent_run_id: str | None = None) -> str:
        return ""

    def log_files(self, files: list[Path]) -> None:
        return None

    def candidate_run(self, cand: Candidate) -> str | None:
        return None

    def register_candidate(self, name: str, cand: Candidate, tags: dict, run_id: str | None,
                           model_dir: Path, description: str = "") -> dict | None:
        return None

    def start_variant(self, name: str, params: dict, tags: dict) -> str:
        return ""

    def end_variant(self, run_id: str, final: Candidate | None, failed: bool) -> None:
        return None

    def end_pipeline(self, metrics: dict, tags: dict, failed: bool) -> None:
        return None
