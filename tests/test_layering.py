"""evalcore/ and models_zoo/ never import the web stack; evalcore never imports a model stack.

evalcore reaches models only through its few-shot protocol (``evalcore/fewshot/lm.py``): no
file of it imports torch, transformers, sentence_transformers or models_zoo, at module level or
inside a function, under ``TYPE_CHECKING`` or not.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WEB_STACK = {"django", "rest_framework", "celery", "kombu", "drf_spectacular"}
MODEL_STACK = {"torch", "models_zoo", "transformers", "sentence_transformers", "tokenizers"}


def module_level_imports(path: Path) -> list[tuple[str, int, bool]]:
    """(top-level package, line, at module level) for every import in a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    top_level_nodes = {id(node) for node in tree.body}
    for node in tree.body:
        if isinstance(node, ast.If | ast.Try):  # imports under `if TYPE_CHECKING` etc.
            top_level_nodes.update(id(child) for child in ast.walk(node))
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            found.append((name.split(".")[0], node.lineno, id(node) in top_level_nodes))
    return found


def python_files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", ["evalcore", "models_zoo"])
def test_pure_packages_never_import_the_web_stack(package: str) -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in python_files(package)
        for name, line, _ in module_level_imports(path)
        if name in WEB_STACK
    ]
    assert offenders == []


def test_evalcore_never_imports_a_model_stack() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in python_files("evalcore")
        for name, line, _ in module_level_imports(path)
        if name in MODEL_STACK
    ]
    assert offenders == []


def test_a_type_checking_block_is_no_exemption(tmp_path: Path) -> None:
    sneaky = tmp_path / "sneaky.py"
    sneaky.write_text(
        "from __future__ import annotations\nfrom typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import torch\n"
    )
    assert ("torch", 4, True) in module_level_imports(sneaky)


def test_layering_check_catches_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from __future__ import annotations\nimport django.db\n\ndef f():\n    import torch\n"
    )
    imports = module_level_imports(bad)
    assert ("django", 2, True) in imports
    assert ("torch", 5, False) in imports


def test_web_process_does_not_import_torch() -> None:
    """Loading every URL and view of the web app must not pull torch in."""
    code = (
        "import os, sys; os.environ['DJANGO_SETTINGS_MODULE']='config.settings';"
        "import django; django.setup();"
        "from django.urls import get_resolver; get_resolver().url_patterns;"
        "import config.wsgi;"
        "print('torch' in sys.modules)"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


# --- The Django apps' boundaries (ARCHITECTURE.md) -----------------------------------------

PROJECT = ("config", "core", "contestants", "leaderboard", "arena", "submissions", "demo")
# What each app may import of the project, besides itself, config and the pure packages.
ALLOWED_APP_IMPORTS = {
    "core": set(),  # the ground floor: error contract, health, launcher, queueing
    "contestants": {"core"},
    "leaderboard": {"core", "contestants"},
    "arena": {"core", "contestants", "leaderboard"},
    "submissions": {"core", "contestants", "leaderboard", "arena"},
    "demo": {"core", "contestants", "leaderboard", "arena"},
}


def all_imports(path: Path, module: str) -> set[str]:
    """Every module a file imports (absolute or relative, module level or inside functions)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".")[: -node.level or None]
                if path.name == "__init__.py":
                    package = module.split(".")[: len(module.split(".")) - node.level + 1]
                base = ".".join([*package, *([node.module] if node.module else [])])
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def project_modules() -> dict[str, Path]:
    modules = {}
    for package in (*PROJECT, "evalcore", "models_zoo"):
        for path in python_files(package):
            if "migrations" in path.parts:
                continue
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            modules[name.removesuffix(".__init__")] = path
    return modules


@pytest.mark.parametrize("app", sorted(ALLOWED_APP_IMPORTS))
def test_apps_import_only_the_apps_below_them(app: str) -> None:
    allowed = {app, "config", *ALLOWED_APP_IMPORTS[app]}
    offenders = sorted(
        f"{path.relative_to(ROOT)} imports {name}"
        for module, path in project_modules().items()
        if module.split(".")[0] == app
        for name in all_imports(path, module)
        if name.split(".")[0] in PROJECT and name.split(".")[0] not in allowed
    )
    assert offenders == []


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets = {resolve(name) for name in all_imports(path, module)}
        # A module may import its own package's __init__ (re-exports); that is no cycle.
        graph[module] = {t for t in targets if t and t != module and not module.startswith(t + ".")}
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iteratively: the groups of modules that import each other."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, set())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    return groups


def test_no_import_cycles_in_the_project() -> None:
    assert strongly_connected(import_graph()) == []


def test_cycle_check_finds_a_cycle() -> None:
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


MAX_FUNCTION_LINES = 60
# GPU kernels keep their bodies whole (one Triton program reads best as one function).
LONG_FUNCTIONS_ALLOWED_UNDER = (ROOT / "models_zoo" / "kernels",)


def long_functions(path: Path, limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """``name (lines)`` of every function or method in ``path`` longer than ``limit`` lines."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > limit
    ]


def test_no_product_function_is_longer_than_sixty_lines() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}: {', '.join(found)}"
        for path in project_modules().values()
        if not path.is_relative_to(LONG_FUNCTIONS_ALLOWED_UNDER[0])
        for found in [long_functions(path)]
        if found
    ]
    assert offenders == []


def test_length_check_counts_a_long_function(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    source = tmp_path / "long.py"
    source.write_text(f"def short():\n    return 1\n\n\ndef long():\n{body}\n", encoding="utf-8")
    assert long_functions(source) == [f"long ({MAX_FUNCTION_LINES + 1} lines)"]
