"""The code each dvc.yaml stage depends on, computed from imports (tests/pipelines/test_dvc_deps.py keeps
dvc.yaml equal to it). Print the lists: `python -m lambdaslim.store.dvc_deps`."""
from __future__ import annotations

import importlib.util
from pathlib import Path

from lambdaslim.store.keys import module_closure

# Stage -> the module its command runs; the stage depends on that module and every project module it imports.
STAGE_ENTRIES = {
    "data": "lambdaslim.data.check",
    "train_baseline": "lambdaslim.baseline",
    "select": "lambdaslim.select.across_runs",
    "package": "lambdaslim.packaging.package",
}
# Files a stage runs or copies without importing them: the handler and harnesses, the build templates.
EXTRA = {"package": ("pipelines/packaging/handler.py", "pipelines/packaging/harness.py",
                     "pipelines/packaging/torch_handler.py", "pipelines/packaging/templates")}


def code_deps(stage: str, root: Path) -> list[str]:
    files = []
    for name in module_closure(STAGE_ENTRIES[stage]):
        origin = Path(importlib.util.find_spec(name).origin).resolve()
        files.append(str(origin.relative_to(root.resolve())))
    return sorted(set(files) | set(EXTRA.get(stage, ())))


if __name__ == "__main__":
    here = Path(__file__).resolve().parents[2]
    for stage in STAGE_ENTRIES:
        print(f"{stage}:")
        for f in code_deps(stage, here):
            print(f"  - {f}")
