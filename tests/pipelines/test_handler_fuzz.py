"""The packaged handler under abuse: 1,200 generated events (wrong shapes, huge strings, lone surrogates,
non-UTF-8 and non-base64 bodies, nested junk, empty lists, oversized batches, payloads over Lambda's 6 MB)
with good events mixed in, sent to a package tree built by the packaging code, in one fresh interpreter
that has only the standard library and the package on its path. Zero crashes; every bad event gets a
4xx and a JSON error (413 for a proxy body over 6 MB); every good event gets the right labels."""
from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from lambdaslim.records import Candidate
from lambdaslim.store.atomic import write_json_atomic
from lambdaslim.testing.tiny import make_rows
from lambdaslim.testing.fuzz import fuzz_events
from lambdaslim.testing.handler_runs import build_task_root, reference_labels, send_events

EVENTS, SEED, MAX_TOKENS = 1200, 7, 32
ENV = {"LAMBDASLIM_MAX_TOKENS": str(MAX_TOKENS), "LAMBDASLIM_MAX_BATCH": "32", "LAMBDASLIM_MAX_TEXT_CHARS": "2000"}


@pytest.fixture(scope="module")
def package(tiny_onnx, tmp_path_factory) -> tuple[Path, Path]:
    """(task root, best dir): the tiny model's ONNX export as a best candidate, unpacked like /var/task."""
    work = tmp_path_factory.mktemp("fuzz")
    best = work / "best"
    shutil.copytree(tiny_onnx.path, best)
    write_json_atomic(best / "candidate.json", Candidate(stage="export_onnx", kind="export_onnx", index=1,
                                                         path=str(best), format="onnx", size_bytes=1,
                                                         config_digest="fuzz", config={}).to_dict())
    return build_task_root(best, work / "task"), best


def test_generated_events_cover_every_kind_of_abuse():
    good = [t for t, _ in make_rows(50, 5)]
    events = fuzz_events(EVENTS, SEED, good)
    kinds = Counter(e.category for e in events)
    assert len(events) >= 1000
    assert sum(e.texts is not None for e in events) >= 150
    assert sum(e.over_limit for e in events) >= 6 and sum(e.over_limit and e.proxy for e in events) >= 3
    for kind in ("junk value", "empty", "text too long", "batch too large", "lone surrogate", "non-UTF-8 body",
                 "invalid JSON body", "not base64", "list with a non-text", "deeply nested JSON body",
                 "nested 400 deep", "5000-digit number"):
        assert kinds[kind] >= 1, kind
    assert fuzz_events(EVENTS, SEED, good) == events  # reproducible from its seed


def test_handler_survives_fuzzing_and_answers_every_event(package, tmp_path):
    task_root, best = package
    good = [t for t, _ in make_rows(50, 5)]
    events = fuzz_events(EVENTS, SEED, good)
    expected = reference_labels(best, [t for e in events if e.texts for t in e.texts], MAX_TOKENS)

    outcome = send_events(task_root, events, expected, tmp_path, ENV)

    assert not outcome.crashed, outcome.problems[:1]
    assert outcome.problems == [], outcome.problems[:10]
    assert outcome.good == outcome.good_correct >= 150
    assert outcome.bad == outcome.bad_4xx_json and outcome.bad + outcome.good == len(events)
    assert outcome.over_limit == outcome.over_limit_4xx >= 6
