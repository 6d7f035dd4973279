"""The library (moderator/) never imports the app (workers/): the app is built on the
library. A command or benchmark that needs the worker starts it by module path
(`python -m workers`, `python -m workers.benchmarks`)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from tests.paths import REPO

APP = "workers"


def imported_modules(path: Path) -> Iterator[tuple[int, str]]:
    """(line, module) of every import in a file, dynamic ones with a literal name included."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
        elif (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and (
                (isinstance(node.func, ast.Name) and node.func.id == "__import__")
                or (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
            )
        ):
            yield node.lineno, node.args[0].value


def test_the_library_never_imports_the_app() -> None:
    offenders = [
        f"{path.relative_to(REPO)}:{line}: {module}"
        for path in sorted((REPO / "moderator").rglob("*.py"))
        for line, module in imported_modules(path)
        if module == APP or module.startswith(f"{APP}.")
    ]
    assert offenders == []


def test_the_check_sees_every_kind_of_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import workers.main\n"
        "from workers.moderation_worker import ModerationWorker\n"
        "def f():\n"
        "    from workers import health\n"
        "    importlib.import_module('workers.scorer')\n"
        "    __import__('workers')\n"
        "from . import workers\n"
    )
    assert [module for _, module in imported_modules(sample)] == [
        "workers.main",
        "workers.moderation_worker",
        "workers",
        "workers.scorer",
        "workers",
    ]
