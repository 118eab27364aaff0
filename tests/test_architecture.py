"""The house rules, checked on the source: imports point down only, no import circles, one door to each outside
service, no product file over 450 lines (docs/dev/conventions.md, "Rooms and arrows").

Imports are read with ``ast``, never executed. Every import counts as an arrow: at module level, inside a function
(a lazy import is still a dependency), and under ``if TYPE_CHECKING:`` (a circle hidden from the interpreter is still
a circle for the reader and for mypy). ``from a.b import c`` points at the module ``a.b.c`` when that is a module of
ours, else at ``a.b``; importing a module does not count as importing its parent packages. A failure names the file,
the line and the import that breaks the rule.
"""

from __future__ import annotations

import ast
import functools
import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

ROOMS = ("llm_backend", "knowledge", "core", "evaluation", "training", "apps")
"""The product rooms (top-level packages)."""

ALLOWED: Mapping[str, frozenset[str]] = {
    "llm_backend": frozenset(),
    "knowledge": frozenset({"llm_backend"}),
    "core": frozenset({"knowledge", "llm_backend"}),
    "evaluation": frozenset({"core", "knowledge", "llm_backend"}),
    "training": frozenset({"llm_backend"}),
    "apps": frozenset({"evaluation", "core", "knowledge", "llm_backend", "training"}),
}
"""Which rooms each room may import: apps -> evaluation -> core -> knowledge -> llm_backend, and
apps -> training -> llm_backend. Skipping a floor down is fine; nothing points up or sideways."""

NOT_PRODUCT = ("benchmarks", "tests", "scripts")
"""Top-level folders product code never imports."""

ONE_DOOR: Mapping[str, tuple[str, ...]] = {
    "openai": ("llm_backend/client.py",),
    "chromadb": ("knowledge/",),
}
"""Outside libraries that only these files (or folders, ending in /) may import."""

BENCHMARK_EXEMPTIONS: Mapping[str, frozenset[str]] = {
    "benchmarks/engine.py": frozenset({"openai"}),  # the official client is the baseline our client is measured against
    "benchmarks/retrieval.py": frozenset({"chromadb"}),  # LangChain's Chroma pipeline is the baseline of ingestion
    "benchmarks/api.py": frozenset({"openai"}),  # drives `ragent api` through the official client, as its users do
}
"""Benchmarks measure our code against outside baselines, so some import a one-door library directly. These are the
only ones; tests/ is not checked (contract tests speak through the official ``openai`` client on purpose)."""

MAX_LINES = 450

PROMPT_ENVIRONMENT = "core/prompts.py"
"""The one file that builds a Jinja environment (every prompt renders with the same settings)."""


@dataclass(frozen=True)
class Import:
    """One import statement's target, as read from ``path`` (relative to the root)."""

    path: str
    line: int
    target: str
    statement: str
    type_checking: bool = False

    def where(self) -> str:
        hidden = " (under TYPE_CHECKING)" if self.type_checking else ""
        return f"{self.path}:{self.line}: `{self.statement}`{hidden}"


def module_of(path: Path, root: Path) -> str:
    """``core/agent/loop.py`` -> ``core.agent.loop``; a package's ``__init__.py`` -> the package."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def python_files(root: Path, folders: Iterable[str]) -> list[Path]:
    """The ``.py`` files under ``folders`` of ``root``, in a stable order (caches left out)."""
    return sorted(p for f in folders for p in (root / f).rglob("*.py") if "__pycache__" not in p.parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def read_imports(path: Path, root: Path, modules: frozenset[str]) -> list[Import]:
    """Every import in ``path``, at any depth, resolved to our modules where they are ours (else the name as written)."""
    rel = path.relative_to(root).as_posix()
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=rel)
    package = module_of(path, root) if path.name == "__init__.py" else module_of(path, root).rpartition(".")[0]
    found: list[Import] = []

    def resolve(name: str) -> str:
        while name and name not in modules and "." in name:
            name = name.rpartition(".")[0]
        return name

    def visit(node: ast.AST, hidden: bool) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, True)
            for child in node.orelse:
                visit(child, hidden)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append(Import(rel, node.lineno, resolve(alias.name), f"import {alias.name}", hidden))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from .x import y
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            statement = f"from {'.' * node.level}{node.module or ''} import {', '.join(a.name for a in node.names)}"
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.append(Import(rel, node.lineno, full if full in modules else resolve(base), statement, hidden))
        for child in ast.iter_child_nodes(node):
            visit(child, hidden)

    visit(tree, False)
    return found


@functools.cache
def product_imports(root: Path) -> dict[str, list[Import]]:
    """Module name -> its imports, for every module of the product rooms under ``root``."""
    files = python_files(root, [r for r in ROOMS if (root / r).is_dir()])
    modules = frozenset(module_of(p, root) for p in files)
    return {module_of(p, root): read_imports(p, root, modules) for p in files}


def upward_arrows(root: Path) -> list[str]:
    """Imports from one room into a room it may not use (or into benchmarks/tests/scripts)."""
    problems = []
    for module, imports in product_imports(root).items():
        room = module.split(".")[0]
        for imp in imports:
            other = imp.target.split(".")[0]
            if other in NOT_PRODUCT:
                problems.append(f"{imp.where()}: product code imports {other}/")
            elif other in ROOMS and other != room and other not in ALLOWED[room]:
                allowed = ", ".join(sorted(ALLOWED[room])) or "no other room"
                problems.append(f"{imp.where()}: {room} -> {other} is not an allowed arrow ({room} may import {allowed})")
    return problems


def import_cycles(root: Path) -> list[str]:
    """Each circle among the product modules, as the chain of imports that closes it."""
    graph = product_imports(root)
    edges: dict[str, dict[str, Import]] = {m: {} for m in graph}
    for module, imports in graph.items():
        for imp in imports:
            if imp.target in graph and imp.target != module:
                edges[module].setdefault(imp.target, imp)
    cycles: list[str] = []
    for component in _strongly_connected(edges):
        if len(component) < 2:
            continue
        chain = _cycle_in(component, edges)
        steps = [edges[a][b].where() for a, b in itertools.pairwise(chain)]
        cycles.append(" -> ".join(chain) + "\n    " + "\n    ".join(steps))
    return cycles


def _strongly_connected(edges: Mapping[str, Mapping[str, Import]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (the graph has hundreds of modules)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def _cycle_in(component: list[str], edges: Mapping[str, Mapping[str, Import]]) -> list[str]:
    """One concrete circle through the first module of a strongly connected component (breadth-first: the shortest)."""
    members = set(component)
    start = component[0]
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for node in frontier:
            for child in sorted(edges[node]):
                if child == start:
                    chain = [start]
                    while node != start:
                        chain.append(node)
                        node = previous[node]
                    return [start, *reversed(chain[1:]), start]
                if child in members and child not in previous:
                    previous[child] = node
                    nxt.append(child)
        frontier = nxt
    return [start, start]  # pragma: no cover - a component of two or more always has a circle


def one_door_breaches(root: Path) -> list[str]:
    """Imports of a one-door library outside its door (benchmarks: outside :data:`BENCHMARK_EXEMPTIONS`), and
    exemptions that are no longer used."""
    problems = []
    used: set[tuple[str, str]] = set()
    folders = [f for f in (*ROOMS, "benchmarks") if (root / f).is_dir()]
    modules = frozenset(module_of(p, root) for p in python_files(root, folders))
    for path in python_files(root, folders):
        for imp in read_imports(path, root, modules):
            library = imp.target.split(".")[0]
            if library not in ONE_DOOR or any(imp.path == d or (d.endswith("/") and imp.path.startswith(d)) for d in ONE_DOOR[library]):
                continue
            if library in BENCHMARK_EXEMPTIONS.get(imp.path, frozenset()):
                used.add((imp.path, library))
                continue
            problems.append(f"{imp.where()}: only {', '.join(ONE_DOOR[library])} may import {library}")
    for path, libraries in BENCHMARK_EXEMPTIONS.items():
        problems += [f"{path}: exempt from the {lib} door but no longer imports it; drop the exemption"
                     for lib in sorted(libraries) if (root / path).is_file() and (path, lib) not in used]
    return problems


def test_imports_point_down_only() -> None:
    problems = upward_arrows(ROOT)
    assert not problems, "imports that point up or sideways:\n" + "\n".join(problems)


def test_no_import_circles_among_product_modules() -> None:
    cycles = import_cycles(ROOT)
    assert not cycles, "import circles (break one import of each):\n" + "\n".join(cycles)


def test_one_door_to_openai_and_chromadb() -> None:
    problems = one_door_breaches(ROOT)
    assert not problems, "\n".join(problems)


def test_product_code_does_not_use_the_test_doubles() -> None:
    problems = [
        f"{imp.where()}: llm_backend.testing is test support; product code must not depend on it"
        for module, imports in product_imports(ROOT).items() if not module.startswith("llm_backend.testing")
        for imp in imports if imp.target.startswith("llm_backend.testing")
    ]
    assert not problems, "\n".join(problems)


def test_one_jinja_environment_renders_every_prompt() -> None:
    problems = []
    for path in python_files(ROOT, ROOMS):
        rel = path.relative_to(ROOT).as_posix()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            named = isinstance(node, ast.ImportFrom) and node.module == "jinja2" and any(a.name == "Environment" for a in node.names)
            called = isinstance(node, ast.Attribute) and node.attr == "Environment" and isinstance(node.value, ast.Name) and node.value.id == "jinja2"
            if (named or called) and rel != PROMPT_ENVIRONMENT:
                problems.append(f"{rel}:{node.lineno}: builds its own jinja2.Environment; render with {PROMPT_ENVIRONMENT}")
    assert not problems, "\n".join(problems)


def test_no_product_file_is_over_450_lines() -> None:
    long = []
    for path in python_files(ROOT, ROOMS):
        n = len(path.read_text(encoding="utf-8").splitlines())
        if n > MAX_LINES:
            long.append(f"{path.relative_to(ROOT).as_posix()}: {n} lines")
    assert not long, f"product files over {MAX_LINES} lines (split them by job):\n" + "\n".join(long)


# -- the checker itself, on a planted tree: each rule fails where it should --------------------------------------------
def _plant(root: Path, files: Mapping[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    for room in ROOMS:
        (root / room).mkdir(exist_ok=True)
        (root / room / "__init__.py").touch()
    return root


def test_the_checker_sees_upward_arrows_in_functions_and_under_type_checking(tmp_path: Path) -> None:
    root = _plant(tmp_path, {
        "llm_backend/client.py": "def f():\n    from core.rag import answer\n",
        "knowledge/store.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from evaluation.runner import run\n",
        "core/ok.py": "import knowledge.store\nfrom llm_backend import client\n",
        "training/bad.py": "from knowledge import store\n",
        "core/rag/__init__.py": "", "core/rag/answer.py": "", "evaluation/runner.py": "import tests.helpers\n",
    })
    problems = "\n".join(upward_arrows(root))
    assert "llm_backend/client.py:2: `from core.rag import answer`: llm_backend -> core" in problems
    assert "knowledge/store.py:3: `from evaluation.runner import run` (under TYPE_CHECKING): knowledge -> evaluation" in problems
    assert "training/bad.py:1" in problems and "evaluation/runner.py:1: `import tests.helpers`: product code imports tests/" in problems
    assert "core/ok.py" not in problems


def test_the_checker_names_each_import_of_a_circle(tmp_path: Path) -> None:
    root = _plant(tmp_path, {
        "core/agent/__init__.py": "from core.agent.loop import Agent\n",
        "core/agent/loop.py": "from core.agent.events import Event\nclass Agent: ...\n",
        "core/agent/events.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from core.agent.loop import Agent\n",
        "core/agent/memory.py": "from core.agent import events\n",
    })
    cycles = import_cycles(root)
    assert len(cycles) == 1, cycles  # the package __init__ re-exporting its modules is not a circle
    assert cycles[0].startswith("core.agent.events -> core.agent.loop -> core.agent.events")
    assert "core/agent/loop.py:1: `from core.agent.events import Event`" in cycles[0]
    assert "core/agent/events.py:3: `from core.agent.loop import Agent` (under TYPE_CHECKING)" in cycles[0]


def test_the_checker_keeps_the_doors(tmp_path: Path) -> None:
    root = _plant(tmp_path, {
        "llm_backend/client.py": "import openai\n",
        "core/rag/answer.py": "def f():\n    from openai import OpenAI\n",
        "knowledge/store.py": "import chromadb\n",
        "apps/ui/kb.py": "import chromadb.config\n",
        "benchmarks/engine.py": "import openai\n",
        "benchmarks/other.py": "import openai\n",
    })
    problems = "\n".join(one_door_breaches(root))
    assert "core/rag/answer.py:2: `from openai import OpenAI`: only llm_backend/client.py may import openai" in problems
    assert "apps/ui/kb.py:1: `import chromadb.config`: only knowledge/ may import chromadb" in problems
    assert "benchmarks/other.py:1" in problems and "benchmarks/engine.py:1" not in problems
    assert "benchmarks/retrieval.py" not in problems  # an exemption for a file that is not there is not reported
    assert "llm_backend/client.py:" not in problems and "knowledge/store.py:" not in problems


@pytest.mark.parametrize("room", ROOMS)
def test_every_room_is_a_package_with_its_arrows_written_down(room: str) -> None:
    assert (ROOT / room / "__init__.py").is_file() and room in ALLOWED
