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
