"""Notebooks are committed stripped: no outputs, no execution counts (`make test` runs them through nbmake)."""
import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_the_notebooks_are_there():
    assert [p.name for p in NOTEBOOKS] == ["01_explore_pipeline.ipynb", "02_compare_runs.ipynb"]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_no_outputs_or_execution_counts(notebook):
    cells = json.loads(notebook.read_text())["cells"]
    dirty = [i for i, c in enumerate(cells)
             if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, (f"{notebook.name}: code cells {dirty} hold outputs or execution counts; clear them "
                       f"(Jupyter: Edit > Clear Outputs of All Cells) and save before committing")
