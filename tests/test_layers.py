"""The package's layers point one way: no module imports another in a cycle (imports inside functions
included), and no module reaches into another's private names."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def _modules() -> dict[str, Path]:
    found = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, str]]:
    """(imported module, imported name or '') for every import statement anywhere in the file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(alias.name, "") for alias in node.names if alias.name in modules]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                if f"{target}.{alias.name}" in modules:
                    out.append((f"{target}.{alias.name}", ""))
                elif target in modules:
                    out.append((target, alias.name))
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: {t for t, _ in _imports(name, path, modules)} - {name} for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_sees_a_cycle_through_a_function_local_import():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_in_the_package():
    assert _cycles(_graph()) == []


def test_no_module_imports_another_modules_private_names():
    modules = _modules()
    private = [
        f"{name} imports {target}.{what}"
        for name, path in modules.items()
        for target, what in _imports(name, path, modules)
        if what.startswith("_") and not what.startswith("__")
    ]
    assert private == []


# The packages in pipeline order: a module may import its own package and those before it, never one after.
LAYERS = ("core", "data", "models", "backends", "generate", "train", "eval", "study", "cli")
# Top-level modules outside the stage packages, and the layer each belongs to.
TOP_LEVEL = {"sami": "core", "sami.plugins": "core", "sami.cli": "cli"}


def _layer(module: str) -> int:
    if module in TOP_LEVEL:
        return LAYERS.index(TOP_LEVEL[module])
    return LAYERS.index(module.split(".")[1])


def _layer_violations(graph: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{name} ({LAYERS[_layer(name)]}) imports {target} ({LAYERS[_layer(target)]})"
        for name, targets in graph.items()
        for target in targets
        if _layer(target) > _layer(name)
    )


def test_every_module_belongs_to_a_layer():
    unplaced = [m for m in _modules() if m not in TOP_LEVEL and (m.count(".") < 1 or m.split(".")[1] not in LAYERS)]
    assert unplaced == []


def test_layer_check_sees_an_import_against_the_pipeline():
    graph = {"sami.data.records": {"sami.train.config"}, "sami.train.config": {"sami.data.records"}}
    assert _layer_violations(graph) == ["sami.data.records (data) imports sami.train.config (train)"]


def test_packages_import_only_earlier_stages():
    assert _layer_violations(_graph()) == []
