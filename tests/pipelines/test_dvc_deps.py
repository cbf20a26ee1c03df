"""dvc.yaml's code dependencies are the modules each stage's command imports, no more and no fewer."""
from pathlib import Path

import yaml

from lambdaslim.store.dvc_deps import STAGE_ENTRIES, code_deps

ROOT = Path(__file__).resolve().parents[2]


def _stage_code_deps(stage: dict) -> list[str]:
    return sorted(d for d in stage["deps"] if d.startswith(("pipelines/", "compressors/")))


def test_each_stage_lists_exactly_the_code_it_imports():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name in STAGE_ENTRIES:
        assert _stage_code_deps(stages[name]) == code_deps(name, ROOT), \
            f"dvc.yaml stage {name}: regenerate its code deps with `python -m lambdaslim.store.dvc_deps`"


def test_compress_depends_on_both_package_folders():
    # A pipeline may run any technique and every engine module: the whole of both folders.
    deps = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["compress"]["do"]["deps"]
    assert {"pipelines", "compressors"} <= set(deps)


def test_select_follows_the_imports_of_its_command():
    deps = code_deps("select", ROOT)
    assert "pipelines/select/pareto.py" in deps and "pipelines/select/plot.py" in deps
    assert "pipelines/packaging/package.py" not in deps  # selection never packages
