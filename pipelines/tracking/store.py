"""Where runs are tracked: the project's sqlite store unless MLFLOW_TRACKING_URI names another, and the
lock that serializes a store's first use."""
from __future__ import annotations

import os
from contextlib import nullcontext
from pathlib import Path
from urllib.parse import unquote, urlparse

from lambdaslim.store import locks


def default_tracking_uri(root: Path) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(root / 'mlflow.db').resolve()}"


def sqlite_file(uri: str) -> Path | None:
    """The database file of a sqlite:/// URI, None for any other store."""
    if not uri.startswith("sqlite:"):
        return None
    return Path(unquote(urlparse(uri).path)) if uri.startswith("sqlite:///") else None


def store_lock(uri: str):
    """MLflow creates a fresh sqlite store's tables unguarded: two processes doing it at once clash. The lock
    lives beside the database (inside the project), never in a shared system folder."""
    db = sqlite_file(uri)
    if db is None:
        return nullcontext()
    return locks.file_lock(db.with_name(f".{db.name}.lock"))
