"""The package's structure, measured from its source: the rules docs/ARCHITECTURE.md states.

- no import cycles between the package's modules, counting imports inside functions too (a
  lazy import hides a cycle from Python but not from the reader who has to change both ends);
- no function longer than 80 lines;
- installed code never reads the repository's test data or the reference venv, and no file
  cites a document that is not in the repository.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "res2net"
MAX_FUNCTION_LINES = 80


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported(node: ast.AST, package: str, modules: set[str]) -> list[str]:
    """Modules of this package that one import statement names."""
    names: list[str] = []
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        names = [target] + [f"{target}.{alias.name}" for alias in node.names]
    return [name for name in names if name in modules]


def import_graph(root: Path = PACKAGE) -> nx.DiGraph:
    """Module -> modules it imports (anywhere in the file), within the package."""
    files = {_module_name(path, root): path for path in root.rglob("*.py")}
    graph = nx.DiGraph()
    graph.add_nodes_from(files)
    for module, path in files.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            for target in _imported(node, package, set(files)):
                if target != module and not module.startswith(target + "."):
                    graph.add_edge(module, target)
    return graph


def test_no_import_cycles():
    cycles = [c for c in nx.simple_cycles(import_graph()) if len(c) > 1]
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_graph_sees_a_cycle(tmp_path):
    """The checker itself: two modules that import each other inside functions are a cycle."""
    pkg = tmp_path / "res2net"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from res2net.b import g\n")
    (pkg / "b.py").write_text("def g():\n    from . import a\n")
    cycles = [sorted(c) for c in nx.simple_cycles(import_graph(pkg))]
    assert ["res2net.a", "res2net.b"] in cycles


def _functions(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def test_no_long_functions():
    long = [
        f"{path.relative_to(ROOT)}:{fn.lineno} {fn.name} ({fn.end_lineno - fn.lineno + 1} lines)"
        for path in sorted(PACKAGE.rglob("*.py"))
        for fn in _functions(path)
        if fn.end_lineno - fn.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, "functions over 80 lines:\n" + "\n".join(long)


@pytest.mark.parametrize("needle", ["tests/data", ".venv-ref"])
def test_installed_code_reads_no_repository_files(needle):
    hits = [
        str(path.relative_to(ROOT)) for path in PACKAGE.rglob("*.py") if needle in path.read_text()
    ]
    assert not hits, f"installed code mentions {needle!r}: {hits}"


def test_no_citation_of_documents_outside_the_repository():
    outside = "REFERENCE" + ".md"
    hits = [
        str(path.relative_to(ROOT))
        for folder in ("res2net", "tests", "benchmarks", "scripts", "cpp", "configs", "docs")
        for path in (ROOT / folder).rglob("*")
        if path.is_file()
        and path.suffix in {".py", ".md", ".sh", ".cpp", ".h", ".hpp", ".txt", ".yaml"}
        and outside in path.read_text(errors="replace")
    ]
    top = ("README.md", "BENCHMARKS.md")
    hits += [name for name in top if outside in (ROOT / name).read_text()]
    assert not hits, f"files citing {outside}, which is not in the repository: {hits}"
