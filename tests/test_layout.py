"""The house rules of the package, checked on its source (no server, no import).

- no import cycle between hbase2es modules (module-level imports: a function-level import
  is a deliberate late import and must say why);
- the pool imports nothing of the project; pure modules import no I/O module;
- no module over MAX_MODULE_LINES lines and no function over MAX_FUNCTION_LINES lines,
  unless the file or function says why in a ``# long:`` comment.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "hbase2es"
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 60
PURE = ("hbase2es.timewindow", "hbase2es.timesource", "hbase2es.timecodec", "hbase2es.mapping",
        "hbase2es.indexname", "hbase2es.sections", "hbase2es.search.chunking", "hbase2es.backoff",
        "hbase2es.decoders",
        "hbase2es.run.pieces", "hbase2es.run.onepass", "hbase2es.run.readcost",
        "hbase2es.errors", "hbase2es.infer", "hbase2es.inferwindow",
        "hbase2es.jobfile", "hbase2es.mappingconfig", "hbase2es.run.throttle", "hbase2es.deletes",
        "hbase2es.search.product", "hbase2es.docaddress")
IO_PACKAGES = ("hbase2es.hbase", "hbase2es.search.engine", "hbase2es.search.writer",
               "hbase2es.search.indexsetup", "hbase2es.search.deadletter", "hbase2es.run.export",
               "hbase2es.run.ledger", "hbase2es.run.executors", "hbase2es.run.spark")
THIRD_PARTY_IO = ("happybase", "thriftpy2", "elasticsearch", "elastic_transport", "pyspark",
                  "sqlite3", "socket")
# The one module that talks HTTP to the search engine (its docstring says why this way).
ENGINE_LIBRARIES = ("elasticsearch", "elastic_transport")
ENGINE_MODULE = "hbase2es.search.engine"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _top_level_imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Project modules (and third-party roots) imported at module level by ``name``."""
    tree = ast.parse(path.read_text())
    out: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If):  # e.g. version switches: still module level
            body = node.body + node.orelse
        else:
            body = [node]
        for item in body:
            if isinstance(item, ast.Import):
                out.update(alias.name for alias in item.names)
            elif isinstance(item, ast.ImportFrom):
                target = _resolve(name, path.name == "__init__.py", item)
                out.add(target)
                for alias in item.names:  # "from . import engine" imports a module
                    if f"{target}.{alias.name}" in modules:
                        out.add(f"{target}.{alias.name}")
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        imports = _top_level_imports(name, path, modules)
        graph[name] = {m for m in imports if m in modules and m != name}
        graph[name] |= {m for m in imports if m.split(".")[0] in THIRD_PARTY_IO}
        # Importing a.b.c runs a/__init__ and a/b/__init__ first.
        for m in list(graph[name]):
            parts = m.split(".")
            graph[name] |= {".".join(parts[:i]) for i in range(2, len(parts))
                            if ".".join(parts[:i]) in modules and ".".join(parts[:i]) != name
                            and not name.startswith(".".join(parts[:i]) + ".")}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph:
                continue
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def _reach(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_no_import_cycle():
    assert _cycle(_graph()) is None, f"import cycle: {' -> '.join(_cycle(_graph()))}"


def test_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_pool_imports_nothing_of_the_project():
    assert not {m for m in _graph()["hbase2es.pool"] if m.startswith("hbase2es")}


@pytest.mark.parametrize("module", PURE)
def test_pure_modules_reach_no_io(module):
    graph = _graph()
    if module not in graph:
        pytest.fail(f"{module} is listed as pure but does not exist")
    reached = _reach(graph, module)
    io = sorted(m for m in reached
                if m.startswith(IO_PACKAGES) or m.split(".")[0] in THIRD_PARTY_IO)
    assert not io, f"{module} reaches I/O modules: {io}"


def _all_imports(path: Path) -> set[str]:
    """Every module an ``import`` anywhere in the file names (functions included)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            out.add(node.module)
    return out


def test_only_the_engine_module_imports_a_search_client_library():
    users = sorted(name for name, path in _modules().items()
                   if name != ENGINE_MODULE
                   and any(m.split(".")[0] in ENGINE_LIBRARIES for m in _all_imports(path)))
    assert not users, f"these modules talk to the engine past search/engine.py: {users}"
    assert "elastic_transport" in _all_imports(_modules()[ENGINE_MODULE])


def _says_why(lines: list[str]) -> bool:
    return any("# long:" in line for line in lines)


def test_modules_and_functions_stay_small():
    too_long = []
    for name, path in _modules().items():
        lines = path.read_text().splitlines()
        if len(lines) > MAX_MODULE_LINES and not _says_why(lines[:40]):
            too_long.append(f"{name}: {len(lines)} lines")
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                body = lines[node.lineno - 1:node.end_lineno]
                if length > MAX_FUNCTION_LINES and not _says_why(body[:6]):
                    too_long.append(f"{name}.{node.name}: {length} lines")
    assert not too_long, "too long without a '# long:' reason: " + "; ".join(too_long)
