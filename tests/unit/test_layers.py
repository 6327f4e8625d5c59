"""The house's structure (issue 12): no import cycles among chalicelib's modules — counting the imports made inside
functions too — and no lower module importing a higher one (the money core, the database layer and the trading
domain never reach up into the bot, the API, the CLI or the fleet)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOWER = ("chalicelib.money", "chalicelib.accounting", "chalicelib.states", "chalicelib.settings", "chalicelib.ids",
         "chalicelib.jsonutil", "chalicelib.logs", "chalicelib.ledger", "chalicelib.db", "chalicelib.trading",
         "chalicelib.valuation")
HIGHER = ("chalicelib.api", "chalicelib.bot", "chalicelib.cli", "chalicelib.fleet", "chalicelib.dashboard",
          "chalicelib.balances", "chalicelib.verify", "chalicelib.notify")


def _modules() -> dict[str, Path]:
    found = {}
    for path in (ROOT / "chalicelib").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets.add(node.module)
                targets |= {f"{node.module}.{a.name}" for a in node.names}
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def _under(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def test_no_import_cycle_among_chalicelib_modules() -> None:
    graph, state, cycles = _graph(), {}, []

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                cycles.append(" -> ".join([*path[path.index(target):], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_no_lower_module_imports_a_higher_one() -> None:
    upward = sorted(f"{m} imports {t}" for m, targets in _graph().items() if _under(m, LOWER)
                    for t in targets if _under(t, HIGHER))
    assert upward == []
