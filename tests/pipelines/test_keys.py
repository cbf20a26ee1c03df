"""Cache keys cover the code a stage runs, the libraries that write artifacts and the data read."""
import sys
import textwrap
from pathlib import Path

import pytest

from lambdaslim.store import keys
from lambdaslim.store.keys import code_digest, module_closure


@pytest.fixture
def probe_pkg(tmp_path, monkeypatch):
    """A throwaway package laid out like the techniques: two stages, one of which imports a helper."""
    pkg = tmp_path / "probe_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from probe_pkg import tech_a, tech_b  # registers both\n")
    (pkg / "helper.py").write_text("STEP = 1\n")
    (pkg / "tech_a.py").write_text(textwrap.dedent("""
        def run():
            from probe_pkg.helper import STEP  # imported inside the function: still a dependency
            return STEP
    """))
    (pkg / "tech_b.py").write_text("def run():\n    return 2\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    keys.clear_caches()
    yield pkg
    keys.clear_caches()
    for name in [m for m in sys.modules if m.startswith("probe_pkg")]:
        del sys.modules[name]


def test_editing_a_helper_invalidates_the_stages_that_import_it_and_no_others(probe_pkg):
    a, b = code_digest("probe_pkg.tech_a", "probe_pkg"), code_digest("probe_pkg.tech_b", "probe_pkg")
    (probe_pkg / "helper.py").write_text("STEP = 2\n")
    keys.clear_caches()
    assert code_digest("probe_pkg.tech_a", "probe_pkg") != a
    assert code_digest("probe_pkg.tech_b", "probe_pkg") == b


def test_the_package_init_is_not_a_dependency_of_its_modules(probe_pkg):
    assert module_closure("probe_pkg.tech_a", "probe_pkg") == ("probe_pkg.helper", "probe_pkg.tech_a")
    before = code_digest("probe_pkg.tech_b", "probe_pkg")
    (probe_pkg / "__init__.py").write_text("# edited\n")
    keys.clear_caches()
    assert code_digest("probe_pkg.tech_b", "probe_pkg") == before


def test_training_techniques_depend_on_the_shared_loop_and_quantizers_do_not():
    assert "lambdaslim.compressors.training" in module_closure("lambdaslim.compressors.distill")
    assert "lambdaslim.compressors.training" in module_closure("lambdaslim.compressors.prune_structured")
    assert "lambdaslim.compressors.training" not in module_closure("lambdaslim.compressors.quantize_dynamic")
    assert "lambdaslim.compressors.base" in module_closure("lambdaslim.compressors.quantize_dynamic")


def test_file_digest_follows_content_not_name(tmp_path):
    a, b = tmp_path / "a.tsv", tmp_path / "b.tsv"
    a.write_text("sentence\tlabel\nok\t1\n")
    b.write_bytes(a.read_bytes())
    assert keys.file_digest(a) == keys.file_digest(b)
    b.write_text("sentence\tlabel\nok\t0\n")
    assert keys.file_digest(a) != keys.file_digest(b)


def _run(file):
    from lambdaslim.run.runner import run_pipeline
    from lambdaslim.tracking.protocol import NullTracker

    keys.clear_caches()  # as a new process would: data read afresh
    return run_pipeline(file, tracker=NullTracker(), progress=lambda _: None)


def _bench_files(root: Path) -> set[tuple[str, str]]:
    return {(p.parent.name, p.name) for p in (root / "artifacts" / "stages").rglob("bench-*.json")}


def test_one_byte_of_data_remeasures_and_rebuilds_only_what_reads_it(make_project):
    file = make_project("  - kind: export_onnx\n  - kind: quantize_static\n    calibration_samples: 16\n")
    root = file.parents[2]
    first = _run(file)
    measured = _bench_files(root)

    # The evaluation split (read by every measurement) and the train split (read by no stage here).
    for name in ("eval.tsv", "train.tsv"):
        f = root / "data" / name
        f.write_bytes(f.read_bytes().replace(b"\t1\n", b"\t0\n", 1))  # one label flipped
    second = _run(file)
    assert [c.cached for c in second.candidates[1:]] == [True, True]
    assert [c.stage_key for c in second.candidates] == [c.stage_key for c in first.candidates]
    remeasured = {d for d, _ in _bench_files(root) - measured}
    assert {Path(c.path).name for c in second.candidates[1:]} <= remeasured
    assert f"baseline-{first.candidates[0].stage_key[:16]}" in remeasured
    assert second.candidates[0].metrics["accuracy"] != first.candidates[0].metrics["accuracy"]

    # The calibration split, same path, other content: quantize_static calibrates on it (and export_onnx
    # checks its output on a few of its sentences, so both are rebuilt).
    calib = root / "data" / "calib.tsv"
    calib.write_bytes(calib.read_bytes().replace(b"the", b"a", 1))
    third = _run(file)
    assert [c.cached for c in third.candidates[1:]] == [False, False]
    assert third.candidates[2].stage_key != second.candidates[2].stage_key


def test_a_library_version_is_part_of_the_stage_key(make_project, monkeypatch):
    from lambdaslim.run import session as session_mod

    file = make_project("  - kind: export_onnx\n")
    s = session_mod.Session.open(file)
    tech, cfg = session_mod.TECHNIQUES["export_onnx"], s.p.spec.stages[0]
    before = s.stage_key("input", tech, cfg)
    monkeypatch.setattr(session_mod, "library_versions", lambda names: {n: "0.0.0" for n in names})
    assert s.stage_key("input", tech, cfg) != before
