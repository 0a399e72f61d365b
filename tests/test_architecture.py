"""The folders are floors (docs/architecture.md): a module imports from its own package and the floors below."""

from __future__ import annotations

import ast
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLOORS = {"utils": 0, "config": 1, "datasets": 2, "models": 2, "runtime": 2, "inference": 3, "reporting": 4,
          "training": 5, "cli": 6, "checkpoint": 2}


def _project_imports(path: str) -> set[str]:
    """Top-level project packages ``path`` imports (anywhere in the file, function-level imports included)."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names & set(FLOORS)


def test_no_import_points_up_or_sideways():
    wrong = []
    for package, floor in FLOORS.items():
        folder = os.path.join(REPO, package)
        for name in sorted(os.listdir(folder)):
            if not name.endswith(".py"):
                continue
            for imported in _project_imports(os.path.join(folder, name)):
                if imported != package and FLOORS[imported] >= floor:
                    wrong.append(f"{package}/{name} imports {imported}")
    assert not wrong, wrong


def test_every_package_says_what_lives_there():
    for package in FLOORS:
        with open(os.path.join(REPO, package, "__init__.py")) as f:
            doc = ast.get_docstring(ast.parse(f.read()))
        assert doc and len(doc) > 40, f"{package}/__init__.py needs a docstring saying what lives there"


def test_utils_are_pure_helpers():
    """utils/ reads no files and knows no torch module state: only array and value helpers."""
    for name in sorted(os.listdir(os.path.join(REPO, "utils"))):
        if name.endswith(".py"):
            with open(os.path.join(REPO, "utils", name)) as f:
                text = f.read()
            assert "imread" not in text and "json.load" not in text, f"utils/{name} reads files"
