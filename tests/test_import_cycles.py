"""No import cycle between the package's modules, counting the imports inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

import ps3d_toolkit

ROOT = Path(ps3d_toolkit.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set) -> set:
    """The package's modules that ``path`` imports anywhere in its code (functions included)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # "from package import module" imports the module; "from module import name" the module
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t in modules and t != name)
    return found


def import_graph() -> dict:
    paths = {_module_name(p): p for p in ROOT.rglob("*.py")}
    return {name: _imports(path, set(paths)) for name, path in paths.items()}


def cycles(graph: dict) -> list:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _without_package_exports(graph: dict) -> dict:
    """The graph without a package's ``__init__`` importing its own submodules (its public names):
    Python runs a package's ``__init__`` before any of its modules, so that edge closes no real cycle."""
    return {name: {t for t in targets if not t.startswith(name + ".")} for name, targets in graph.items()}


def test_the_import_graph_sees_imports_inside_functions():
    graph = import_graph()
    # segment() imports the block engine inside the function, to keep `import ps3d_toolkit` light
    assert "ps3d_toolkit.segmentation.engine" in graph["ps3d_toolkit.segmentation.registry"]
    planted = dict(graph)
    planted["ps3d_toolkit.segmentation.engine"] = graph["ps3d_toolkit.segmentation.engine"] | {
        "ps3d_toolkit.segmentation.registry"}
    assert any("ps3d_toolkit.segmentation.engine" in c for c in cycles(_without_package_exports(planted)))


def test_no_import_cycle_between_modules():
    assert cycles(_without_package_exports(import_graph())) == []
