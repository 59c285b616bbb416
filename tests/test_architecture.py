"""The house plan holds: imports point one way, towards the core, with no cycle anywhere."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bot", "handlers", "storage")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """Return the project modules `path` imports anywhere in it, lazy imports inside functions included."""
    found: set[str] = set()
    this = module_name(path)
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                package = this.split(".")[: len(this.split(".")) - node.level + (path.name == "__init__.py")]
                base = ".".join([*package, base] if base else package)
            # `from pkg import sub` imports the submodule; `from pkg import name` the package itself.
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != this:
                found.add(name)
    return found


def graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imports_of(path, modules) for name, path in modules.items()}


def test_there_is_no_import_cycle_even_through_lazy_imports():
    edges, cycles = graph(), []
    state: dict[str, int] = {}  # 1 on the stack, 2 done

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for target in sorted(edges[node]):
            if state.get(target) == 1:
                cycles.append(stack[stack.index(target) :] + [target])
            elif target not in state:
                visit(target, [*stack, target])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_imports_point_towards_the_core():
    allowed = {
        # bot.i18n (the catalogs) is a leaf every layer may speak through.
        "bot.core": ("bot.core", "bot.config", "bot.errors", "bot.i18n", "storage"),
        "bot.mail": ("bot.mail", "bot.core", "bot.config", "bot.errors", "bot.i18n"),
        "storage": ("storage",),
    }
    wrong = []
    for module, targets in graph().items():
        if module.startswith("bot"):
            wrong += [(module, t) for t in targets if t.startswith("handlers")]
        for layer, may in allowed.items():
            if module == layer or module.startswith(layer + "."):
                wrong += [(module, t) for t in targets if not t.startswith(may)]
    assert wrong == []


def test_the_core_loads_no_slack_ssh_or_dns_library():
    core = sorted(name for name in project_modules() if name.startswith("bot.core"))
    code = (
        f"import importlib, sys\nfor m in {core!r}: importlib.import_module(m)\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'slack_sdk', 'slack_bolt', 'paramiko', 'dns'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert len(core) > 10 and out.strip() == "[]"
