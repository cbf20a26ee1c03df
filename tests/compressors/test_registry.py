import inspect
import sys
from typing import Literal

import pytest
from pydantic import ValidationError

from lambdaslim.compressors import TECHNIQUES
from lambdaslim.compressors.base import NodeSelection, StageConfigBase, StageError, register
from lambdaslim.store import keys
from lambdaslim.store.keys import code_digest, module_closure

QUANTIZERS = ("quantize_dynamic", "quantize_static", "quantize_weights_int4")


def test_registry_holds_the_spine_techniques_with_their_formats():
    assert {"export_onnx", "optimize_onnx", "quantize_dynamic"} <= set(TECHNIQUES)
    assert TECHNIQUES["export_onnx"].accepts == ("pytorch",) and TECHNIQUES["export_onnx"].produces == "onnx"
    assert TECHNIQUES["quantize_dynamic"].accepts == ("onnx",)


def test_duplicate_kind_raises():
    class DupConfig(StageConfigBase):
        kind: Literal["export_onnx"] = "export_onnx"

    with pytest.raises(ValueError, match="already registered"):
        register(DupConfig, accepts=("pytorch",), produces="onnx")(lambda *a: None)


def test_config_without_literal_kind_is_refused():
    class NoKind(StageConfigBase):
        kind: str

    with pytest.raises(TypeError, match="needs a Literal default"):
        register(NoKind, accepts=("onnx",), produces="onnx")


@pytest.mark.parametrize("kind", sorted(TECHNIQUES))
def test_a_technique_declares_the_pipeline_data_it_reads(kind):
    """A stage is keyed by the data in its `uses` only: reading anything else would reuse stale outputs."""
    tech = TECHNIQUES[kind]
    source = inspect.getsource(sys.modules[tech.fn.__module__])
    reads = {use for use, attr in (("train", "ctx.train"), ("teacher", "ctx.teacher"),
                                   ("calibration", "ctx.calibration"), ("samples", "ctx.sample_texts"))
             if attr in source}
    assert reads == set(tech.uses)


# ------------------------------------------------------------------------------------------ node selection


def test_every_quantizer_selects_nodes_and_lists_them_and_nothing_else_does():
    for kind, tech in TECHNIQUES.items():
        selects = issubclass(tech.config_cls, NodeSelection)
        assert selects == (kind in QUANTIZERS) == (tech.nodes is not None), kind
    for kind in QUANTIZERS:  # the YAML keys the runner's fallback and the sensitivity scan edit
        fields = set(TECHNIQUES[kind].config_cls.model_fields)
        assert {"op_types", "include_nodes", "exclude_nodes", "fallback"} <= fields, kind


def test_register_refuses_node_selection_without_a_node_lister_and_the_reverse():
    class Selecting(NodeSelection, StageConfigBase):
        kind: Literal["probe_selecting"] = "probe_selecting"

    class Plain(StageConfigBase):
        kind: Literal["probe_plain"] = "probe_plain"

    with pytest.raises(TypeError, match="register its node lister"):
        register(Selecting, accepts=("onnx",), produces="onnx")
    with pytest.raises(TypeError, match="needs a config with NodeSelection"):
        register(Plain, accepts=("onnx",), produces="onnx", nodes=lambda artifact, cfg: [])
    assert "probe_selecting" not in TECHNIQUES and "probe_plain" not in TECHNIQUES


class Selection(NodeSelection, StageConfigBase):
    kind: Literal["probe"] = "probe"


def test_selected_applies_include_then_exclude_in_graph_order():
    nodes = ["a", "b", "c", "d"]
    assert Selection().selected(nodes) == nodes
    assert Selection(exclude_nodes=["c"]).selected(nodes) == ["a", "b", "d"]
    assert Selection(include_nodes=["d", "b"]).selected(nodes) == ["b", "d"]
    assert Selection(include_nodes=["b", "d"], exclude_nodes=["d"]).selected(nodes) == ["b"]


@pytest.mark.parametrize("fields, message", [
    ({"exclude_nodes": ["a", "typo"]}, r"probe: exclude_nodes names 1 node\(s\) not in the graph, e\.g\. 'typo'"),
    ({"include_nodes": ["x", "y"]}, r"probe: include_nodes names 2 node\(s\)"),
    ({"include_nodes": []}, "probe: include_nodes is empty"),
])
def test_check_node_names_refuses_unknown_or_empty_lists_in_one_line(fields, message):
    with pytest.raises(StageError, match=message) as err:
        Selection(**fields).check_node_names(["a", "b"])
    assert "\n" not in str(err.value)
    Selection(exclude_nodes=["a"], include_nodes=["b"]).check_node_names(["a", "b"])  # known names pass


# ------------------------------------------------------------------------------------------ code versions


def test_code_version_digests_the_technique_module_and_the_project_modules_it_imports():
    for kind, tech in TECHNIQUES.items():
        closure = module_closure(tech.fn.__module__)
        assert tech.code_version == code_digest(tech.fn.__module__) and tech.fn.__module__ in closure
        # Never the package (its __init__ imports every technique) nor the baseline fine-tune.
        assert "lambdaslim.compressors" not in closure and "lambdaslim.baseline" not in closure, kind
    training = "lambdaslim.compressors.training"
    assert training in module_closure("lambdaslim.compressors.distill")
    assert training in module_closure("lambdaslim.compressors.prune_structured")
    assert training not in module_closure("lambdaslim.compressors.quantize_dynamic")
    static = module_closure("lambdaslim.compressors.quantize_static")
    assert "lambdaslim.compressors.onnx_nodes" in static and "lambdaslim.compressors.quantize_dynamic" not in static
    assert len({t.code_version for t in TECHNIQUES.values()}) == len(TECHNIQUES)


PROBE = "lambdaslim_probe"


@pytest.fixture
def probe(tmp_path, monkeypatch):
    """A throwaway project package laid out like lambdaslim.compressors: its __init__ imports a technique,
    `technique` imports `helper`, `greedy` imports a name from the package itself."""
    root = tmp_path / PROBE
    root.mkdir()
    files = {"__init__.py": f"from {PROBE} import other  # noqa: F401\nNAME = 1\n",
             "helper.py": "SCALE = 1\n", "other.py": "UNUSED = 1\n",
             "technique.py": f"from {PROBE} import helper\n\n\ndef fn(*args):\n    return helper.SCALE\n",
             "greedy.py": f"from {PROBE} import NAME\n"}
    for name, text in files.items():
        (root / name).write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    keys.clear_caches()
    yield root
    keys.clear_caches()
    for name in [m for m in sys.modules if m.split(".")[0] == PROBE]:
        del sys.modules[name]


def digest(module: str) -> str:
    """The probe module's code digest as a run that starts now computes it (digests are memoized per process)."""
    keys.clear_caches()
    return code_digest(f"{PROBE}.{module}", PROBE)


def test_code_digest_changes_with_the_source_of_an_imported_module_only(probe):
    assert module_closure(f"{PROBE}.technique", PROBE) == (f"{PROBE}.helper", f"{PROBE}.technique")
    before = digest("technique")
    (probe / "other.py").write_text("UNUSED = 2\n")  # imported by the package, not by the technique
    (probe / "__init__.py").write_text(f"from {PROBE} import other  # noqa: F401\nNAME = 2\n")
    assert digest("technique") == before
    (probe / "helper.py").write_text("SCALE = 2\n")
    after = digest("technique")
    assert after != before
    (probe / "technique.py").write_text((probe / "technique.py").read_text() + "# a comment is source too\n")
    assert digest("technique") not in (before, after)


def test_importing_a_name_from_the_package_makes_a_module_depend_on_everything_the_package_imports(probe):
    assert module_closure(f"{PROBE}.greedy", PROBE) == (PROBE, f"{PROBE}.greedy", f"{PROBE}.other")
    before = digest("greedy")
    (probe / "other.py").write_text("UNUSED = 2\n")
    assert digest("greedy") != before  # why techniques import from .base, never from the package


def test_configs_are_frozen_and_forbid_extra_keys():
    cfg_cls = TECHNIQUES["quantize_dynamic"].config_cls
    cfg = cfg_cls(kind="quantize_dynamic")
    with pytest.raises(ValidationError, match="frozen"):
        cfg.per_channel = True
    with pytest.raises(ValidationError, match="extra"):
        cfg_cls(kind="quantize_dynamic", per_chanel=True)
