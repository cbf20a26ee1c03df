"""The largest request the packaged handler accepts: memory is measured at it as well as at a typical one.

Stdlib only: the memory probe imports it in a fresh interpreter that holds nothing else of the project.
"""
from __future__ import annotations

MAX_BATCH = 32  # texts in one request
MAX_TEXT_CHARS = 2000  # characters of one text


def handler_env(max_tokens: int, service: str) -> dict[str, str]:
    """The environment a package's handler runs with (it reads its limits from there)."""
    return {"LAMBDASLIM_MAX_TOKENS": str(max_tokens), "LAMBDASLIM_MAX_BATCH": str(MAX_BATCH),
            "LAMBDASLIM_MAX_TEXT_CHARS": str(MAX_TEXT_CHARS), "POWERTOOLS_SERVICE_NAME": service}


def largest_request(sample: str) -> list[str]:
    """MAX_BATCH texts of MAX_TEXT_CHARS characters built from a real sentence (tokenized, each fills the
    handler's token limit, which is what sizes the activations)."""
    words = (sample.strip() or "text") + " "
    text = (words * (MAX_TEXT_CHARS // len(words) + 1))[:MAX_TEXT_CHARS]
    return [text] * MAX_BATCH
