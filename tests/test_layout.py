"""The layout a newcomer relies on: one `lambdaslim` namespace, no import loops, small modules."""
import ast
import re
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib

from lambdaslim.store.keys import imported_modules

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"lambdaslim": ROOT / "pipelines", "lambdaslim.compressors": ROOT / "compressors"}
MAX_LINES = 300


def _packages_on_disk() -> set[str]:
    found = set()
    for name, folder in FOLDERS.items():
        for init in folder.rglob("__init__.py"):
            rel = init.parent.relative_to(folder)
            found.add(".".join([name, *rel.parts]) if rel.parts else name)
    return found


def _modules() -> dict[str, Path]:
    mods = {}
    for name, folder in FOLDERS.items():
        for f in folder.rglob("*.py"):
            rel = f.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            mods[".".join([name, *parts])] = f
    return mods


def test_pyproject_lists_every_package_folder():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert set(cfg["packages"]) == _packages_on_disk()
    assert cfg["package-dir"] == {"lambdaslim": "pipelines", "lambdaslim.compressors": "compressors"}


def test_the_namespace_imports_from_the_folders():
    import lambdaslim
    import lambdaslim.compressors

    assert Path(lambdaslim.__file__).parent == ROOT / "pipelines"
    assert Path(lambdaslim.compressors.__file__).parent == ROOT / "compressors"


def test_no_import_loops():
    """Imports inside functions count too: a loop hidden in a function is still a loop."""
    graph = {m: {d for d in imported_modules(f) if d != m} for m, f in _modules().items()}
    state: dict[str, int] = {}
    loops = []

    def visit(m, path):
        state[m] = 1
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                loops.append(path[path.index(d):] + [d] if d in path else [m, d])
            elif state.get(d) is None and d in graph:
                visit(d, path + [d])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not loops, "import loops: " + "; ".join(" -> ".join(loop) for loop in loops)


def test_no_private_names_imported_across_modules():
    private = []
    for m, f in _modules().items():
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lambdaslim"):
                private += [f"{m}: {node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
    assert not private


def test_modules_stay_small():
    big = {m: n for m, f in _modules().items() if (n := len(f.read_text().splitlines())) > MAX_LINES}
    assert not big, f"over {MAX_LINES} lines: {big}"


def test_every_module_has_a_docstring():
    missing = [m for m, f in _modules().items()
               if f.stat().st_size and ast.get_docstring(ast.parse(f.read_text())) is None and f.name != "__init__.py"]
    assert not missing


def test_bench_and_package_never_import_tests():
    offenders = [str(f.relative_to(ROOT)) for d in ("bench", "pipelines", "compressors") for f in (ROOT / d).rglob("*.py")
                 if re.search(r"^\s*(from|import) tests\b", f.read_text(), re.M)]
    assert not offenders
