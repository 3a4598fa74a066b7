"""The shape of the package: no import cycles, every module importable alone, one
place that picks a backend, and a README table that lists every module (issue 16).

A cycle hidden behind an import inside a function still couples two modules:
the graph here is built from module-level imports (TYPE_CHECKING blocks aside,
since they never run), so a module-level cycle fails, and the fresh-interpreter
test catches a module that only imports after some other one did.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "chronctl"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def is_package(name: str) -> bool:
    return (ROOT / Path(*name.split(".")) / "__init__.py").exists()


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def module_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Imports that run when the module is imported: at module level, including inside
    module-level `if`/`try` blocks, but not in functions, classes or TYPE_CHECKING."""
    found: list[ast.Import | ast.ImportFrom] = []
    pending: list[ast.stmt] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        elif isinstance(node, ast.If) and not _type_checking(node):
            pending += node.body + node.orelse
        elif isinstance(node, ast.Try):
            pending += node.body + node.orelse + node.finalbody
            for handler in node.handlers:
                pending += handler.body
    return found


def targets(name: str, node: ast.Import | ast.ImportFrom, known: set[str]) -> set[str]:
    """The chronctl modules an import statement in module `name` loads."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names if alias.name in known}
    if node.level:
        package = name if is_package(name) else name.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{node.module}" if node.module else package
    else:
        base = node.module or ""
    out = {base} if base in known else set()
    out |= {f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in known}
    return out


def import_graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    graph: dict[str, set[str]] = {}
    for name, path in found.items():
        tree = ast.parse(path.read_text(), str(path))
        edges: set[str] = set()
        for node in module_level_imports(tree):
            edges |= targets(name, node, known)
        graph[name] = edges - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start)
            if cycle:
                return cycle
    return None


def test_no_import_cycle_among_chronctl_modules() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_check_finds_a_cycle() -> None:
    """The check itself: a two-module cycle and a longer one are reported."""
    assert find_cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_scheduler_and_worker_do_not_import_each_other() -> None:
    """The cycle the issue names: task building lives with the job model now."""
    graph = import_graph()
    assert "chronctl.jobs" in graph["chronctl.worker"]
    assert "chronctl.scheduler" not in graph["chronctl.worker"]
    assert "chronctl.worker" in graph["chronctl.scheduler"]


# Fork per module from a bare interpreter: each child starts with no chronctl module
# loaded, as `python -c "import chronctl.x"` would, at a fraction of the cost.
_IMPORT_EACH = """
import importlib, os, sys, traceback
children = {}
for name in sys.argv[1:]:
    pid = os.fork()
    if pid == 0:
        try:
            importlib.import_module(name)
        except BaseException:
            traceback.print_exc()
            os._exit(1)
        os._exit(0)
    children[pid] = name
failed = [children[pid] for pid in children if os.waitpid(pid, 0)[1] != 0]
print(" ".join(sorted(failed)))
"""


def test_every_module_imports_alone_in_a_fresh_interpreter() -> None:
    names = [n for n in modules() if n != "chronctl.__main__"]  # that one runs the CLI
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_EACH, *names],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [], result.stderr


def callers_of(path: Path, function: str) -> set[str]:
    """The functions of a module that call `function` by its bare name (a client
    library's `Redis.from_url` is another function)."""
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for outer in ast.walk(tree):
        if isinstance(outer, ast.FunctionDef | ast.AsyncFunctionDef):
            for node in ast.walk(outer):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Name)
                    and node.func.id == function
                ):
                    found.add(outer.name)
    return found


def test_one_place_turns_a_url_into_a_backend() -> None:
    """`from_url` is called by `manifest.resolve_backend` only (and by itself, for a
    RabbitMQ state store): `run`, the state commands and `Scheduler.from_manifest`
    cannot pick different stores for one manifest."""
    callers = {module_name(path): callers_of(path, "from_url") for path in PACKAGE.rglob("*.py")}
    callers = {name: found for name, found in callers.items() if found}
    assert callers["chronctl.manifest"] == {"resolve_backend"}, callers
    assert set(callers) == {"chronctl.manifest", "chronctl.backends"}, callers


def architecture_table() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Architecture\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([^`]+)` \|", section, flags=re.MULTILINE)


def test_readme_architecture_table_lists_every_module() -> None:
    listed = architecture_table()
    expected = [
        str(p.relative_to(ROOT))
        for p in sorted([*PACKAGE.rglob("*.py"), *PACKAGE.rglob("*.lua")])
        if p.name != "__init__.py" or p.parent != PACKAGE
    ]
    expected.append("chronctl/__init__.py")
    assert sorted(listed) == sorted(expected)
    assert len(listed) == len(set(listed)), "a module listed twice"


def test_a_broker_backend_writes_only_delivery() -> None:
    """Everything but delivery is forwarded to the state store by `BrokerBackend`, and
    what a state store must add for a broker is declared (`BrokerStateStore`): a new
    broker backend implements delivery and nothing else."""
    from chronctl.backends.base import BrokerStateStore, QueueBackend
    from chronctl.backends.broker import BrokerBackend
    from chronctl.backends.memory import MemoryBackend
    from chronctl.backends.redis import RedisBackend
    from chronctl.backends.sqlite import SQLiteBackend

    delivery = {
        "connect",
        "disconnect",
        "health_check",
        "enqueue",
        "record_fire",
        "dequeue",
        "acknowledge",
        "reject",
        "release",
        "extend_leases",
        "recover_expired",
        "next_due",
    }
    generic = {"notify", "wait_for_work", "enqueue_many", "cleanup_old_tasks"}  # built on others
    interface = {n for n, v in vars(QueueBackend).items() if callable(v) and n[0] != "_"}
    assert BrokerBackend.__abstractmethods__ <= delivery
    assert interface - delivery - generic <= set(vars(BrokerBackend)), "not forwarded"
    publishing = {"claim_for_publish", "confirm_published", "unpublish", "next_publish"}
    assert publishing | {"claim_ids"} <= BrokerStateStore.__abstractmethods__
    assert issubclass(SQLiteBackend, BrokerStateStore)
    assert issubclass(RedisBackend, BrokerStateStore)
    assert not issubclass(MemoryBackend, BrokerStateStore)  # refused as a state store
