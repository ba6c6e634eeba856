"""The architecture, checked statically: which module may import which, and no ``sys.path`` edits.

Every ``.py`` file under ``src/ssp_detect`` is parsed with :mod:`ast` (nothing is imported) and
its imports are collected, function-level ones included, relative ones resolved against the
module's package. ``from package import name`` counts as an import of ``package`` and, where
``package/name.py`` (or ``package/name/``) exists, of ``package.name`` too. The graph's edges are
these explicit imports only; the parent packages that Python also runs are left out.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = "ssp_detect"
# Modules of ssp_detect.models that define no model: the registry itself and checkpoint I/O.
MODEL_INFRASTRUCTURE = {
    "ssp_detect.models",
    "ssp_detect.models.registry",
    "ssp_detect.models.checkpoint",
    "ssp_detect.models.loading",
}
# Where the repository's Python lives: every .py file below these folders, and those at the root.
PYTHON_FOLDERS = ("src", "tests", "benchmarks", "scripts")


def module_name(path: Path, src: Path = SRC) -> str:
    """``src/ssp_detect/data/patch.py`` -> ``ssp_detect.data.patch``; a package's ``__init__.py`` -> the package."""
    parts = path.relative_to(src).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str, src: Path = SRC) -> bool:
    """Whether ``name`` is a module or package of the source tree."""
    base = src.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def imports_of(source: str, module: str, is_package: bool = False, src: Path = SRC) -> set[str]:
    """Every module that ``source`` (the text of ``module``) imports, at any depth of the file.

    Args:
        source: Python source text.
        module: Its dotted name, to resolve relative imports.
        is_package: Whether the source is a package's ``__init__.py`` (``from . import x`` then
            means the package itself).
        src: The folder that holds the top-level package, to tell submodules from other names.
    """
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, node.module] if node.module else anchor)
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names if is_module(f"{base}.{alias.name}", src))
    return found


def import_graph(src: Path = SRC, package: str = PACKAGE) -> dict[str, set[str]]:
    """Module -> the modules of ``package`` it imports, for every module of ``package``."""
    graph = {}
    for path in sorted((src / package).rglob("*.py")):
        name = module_name(path, src)
        imported = imports_of(path.read_text(encoding="utf-8"), name, path.name == "__init__.py", src)
        graph[name] = {m for m in imported if m == package or m.startswith(package + ".")}
    return graph


def import_chain(graph: dict[str, set[str]], start: str, forbidden) -> list[str] | None:
    """The shortest chain of imports from ``start`` to a module for which ``forbidden`` is true, or None."""
    previous = {start: None}
    queue = [start]
    for current in queue:
        if current != start and forbidden(current):
            chain = [current]
            while previous[chain[-1]] is not None:
                chain.append(previous[chain[-1]])
            return chain[::-1]
        for nxt in sorted(graph.get(current, ())):
            if nxt not in previous:
                previous[nxt] = current
                queue.append(nxt)
    return None


def is_under(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def sys_path_edits(source: str) -> list[int]:
    """Lines of ``source`` that change ``sys.path``: a call of one of its mutating methods, or an
    assignment (plain, augmented, annotated, to an item or slice, or a ``del``) to it or into it.
    ``sys`` is followed under any alias (``import sys as s``), and so is ``from sys import path``."""
    tree = ast.parse(source)
    sys_names, path_names = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            sys_names.update(alias.asname or alias.name for alias in node.names if alias.name == "sys")
        elif isinstance(node, ast.ImportFrom) and node.module == "sys" and not node.level:
            path_names.update(alias.asname or alias.name for alias in node.names if alias.name == "path")

    def is_sys_path(node: ast.AST) -> bool:
        if isinstance(node, ast.Attribute):
            return node.attr == "path" and isinstance(node.value, ast.Name) and node.value.id in sys_names
        return isinstance(node, ast.Name) and node.id in path_names

    def targets_sys_path(target: ast.AST) -> bool:
        if isinstance(target, ast.Subscript):
            target = target.value
        if isinstance(target, (ast.Tuple, ast.List)):
            return any(targets_sys_path(t) for t in target.elts)
        return is_sys_path(target)

    mutators = {
        "insert",
        "append",
        "extend",
        "remove",
        "pop",
        "clear",
        "reverse",
        "sort",
        "__setitem__",
        "__delitem__",
        "__iadd__",
    }
    lines = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in mutators
            and is_sys_path(node.func.value)
        ):
            lines.append(node.lineno)
        elif isinstance(node, (ast.Assign, ast.Delete)) and any(targets_sys_path(t) for t in node.targets):
            lines.append(node.lineno)
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)) and targets_sys_path(node.target):
            lines.append(node.lineno)
    return sorted(lines)


def repository_python_files(root: Path = ROOT) -> list[Path]:
    files = sorted(root.glob("*.py"))
    for folder in PYTHON_FOLDERS:
        files += sorted(p for p in (root / folder).rglob("*.py") if "__pycache__" not in p.parts)
    return files


# The checker itself: each case is a source it must (or must not) flag.


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import ssp_detect.models.ssp", {"ssp_detect.models.ssp"}),
        (
            "def f():\n    from ssp_detect.models import registry, get_spec\n",
            {"ssp_detect.models", "ssp_detect.models.registry"},
        ),
        ("from ..models.registry import ModelSpec", {"ssp_detect.models.registry"}),
        ("from . import patch", {"ssp_detect.data", "ssp_detect.data.patch"}),
        ("class A:\n    def f(self):\n        if True:\n            import numpy as np\n", {"numpy"}),
    ],
)
def test_imports_are_found_at_any_depth_and_resolved(source, expected):
    assert imports_of(source, "ssp_detect.data.preprocess") == expected


def test_an_indirect_import_is_found_with_its_chain():
    graph = {"a": {"b"}, "b": {"c", "d"}, "c": set(), "d": {"x.y"}}
    assert import_chain(graph, "a", lambda m: is_under(m, "x")) == ["a", "b", "d", "x.y"]
    assert import_chain(graph, "a", lambda m: is_under(m, "z")) is None


@pytest.mark.parametrize(
    ("source", "flagged"),
    [
        ("import sys\nsys.path.insert(0, 'x')", [2]),
        ("import sys\nsys.path.append('x')", [2]),
        ("import sys\nsys.path = ['x']", [2]),
        ("import sys\nsys.path += ['x']", [2]),
        ("import sys\nsys.path[:0] = ['x']", [2]),
        ("import sys as s\ndef f():\n    s.path.extend(['x'])", [3]),
        ("from sys import path\npath.insert(0, 'x')", [2]),
        ("import sys\nprint(sys.path[0], 'sys.path.insert(0, x)')", []),
        ("import os\nos.path.join('a', 'b')", []),
    ],
)
def test_sys_path_edits_are_found(source, flagged):
    assert sys_path_edits(source) == flagged


# The architecture.


def test_the_graph_covers_the_package():
    graph = import_graph()
    assert {
        "ssp_detect.data.patch",
        "ssp_detect.data.preprocess",
        "ssp_detect.models.registry",
        "ssp_detect.cli",
    } <= set(graph)
    assert "ssp_detect.data.patch" in graph["ssp_detect.data.preprocess"]
    assert "ssp_detect.data.texture_kernel" in graph["ssp_detect.data.patch"]  # imported inside a function


def test_data_does_not_depend_on_models():
    graph = import_graph()
    chains = {
        m: import_chain(graph, m, lambda n: is_under(n, "ssp_detect.models"))
        for m in graph
        if is_under(m, "ssp_detect.data")
    }
    assert not {m: " -> ".join(c) for m, c in chains.items() if c}


def test_the_registry_imports_no_model_module():
    graph = import_graph()
    model_modules = {m for m in graph if is_under(m, "ssp_detect.models")} - MODEL_INFRASTRUCTURE
    assert {"ssp_detect.models.ssp", "ssp_detect.models.baseline", "ssp_detect.models.backbone"} <= model_modules
    assert sorted(graph["ssp_detect.models.registry"] & model_modules) == []


def test_no_file_edits_sys_path():
    files = repository_python_files()
    assert ROOT / "tests" / "test_layout.py" in files and any(p.parts[-2] == "benchmarks" for p in files)
    edits = {str(p.relative_to(ROOT)): lines for p in files if (lines := sys_path_edits(p.read_text(encoding="utf-8")))}
    assert not edits
