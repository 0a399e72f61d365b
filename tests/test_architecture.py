"""The folders are floors (docs/architecture.md): a module imports from its own package and the floors below."""

from __future__ import annotations

import ast
import os

from conftest import REPO

FLOORS = {"utils": 0, "config": 1, "storage": 1, "datasets": 2, "models": 2, "runtime": 2, "inference": 3,
          "reporting": 4, "training": 5, "cli": 6, "scripts": 7, "checkpoint": 2}
# What utils/ may not touch: modules for files, paths and serialisation, and the calls that read or write a
# file (by their full name, whatever the module was imported as).
IO_MODULES = {"os", "io", "pathlib", "shutil", "tempfile", "glob", "json", "csv", "pickle", "h5py", "sqlite3",
              "scipy.io", "PIL", "imageio"}
IO_CALLS = {"open", "torch.save", "torch.load", "numpy.save", "numpy.savez", "numpy.savez_compressed",
            "numpy.load", "numpy.loadtxt", "numpy.savetxt", "numpy.genfromtxt", "numpy.fromfile", "cv2.imread",
            "cv2.imwrite", "cv2.VideoCapture", "cv2.VideoWriter", "h5py.File", "scipy.io.loadmat",
            "scipy.io.savemat"}


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


def _io_uses(path: str) -> list[str]:
    """The file I/O of ``path``: imports of ``IO_MODULES`` (or their parts) and calls of ``IO_CALLS``."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    full_name: dict[str, str] = {}  # local name -> module or object it stands for
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported = [(a.name, a.asname or a.name.split(".")[0], a.asname and a.name or a.name.split(".")[0])
                        for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported = [(f"{node.module}.{a.name}", a.asname or a.name, f"{node.module}.{a.name}")
                        for a in node.names]
        else:
            continue
        for name, local, target in imported:
            full_name[local] = target
            if any(name == m or name.startswith(m + ".") for m in IO_MODULES):
                found.append(f"line {node.lineno}: imports {name}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            parts, func = [], node.func
            while isinstance(func, ast.Attribute):
                parts.insert(0, func.attr)
                func = func.value
            if isinstance(func, ast.Name):
                name = ".".join([full_name.get(func.id, func.id), *parts])
                if name in IO_CALLS:
                    found.append(f"line {node.lineno}: calls {name}")
    return found


def test_utils_are_pure_helpers():
    """utils/ reads and writes no files: no file, path, JSON, HDF5, image or checkpoint I/O (storage/ has it)."""
    found = []
    for name in sorted(os.listdir(os.path.join(REPO, "utils"))):
        if name.endswith(".py"):
            found += [f"utils/{name} {use}" for use in _io_uses(os.path.join(REPO, "utils", name))]
    assert not found, found


def test_the_purity_check_finds_io(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("import numpy as np\nfrom torch import save as keep\nimport os.path\n"
                    "def f(x):\n    np.save('x.npy', x)\n    keep(x, 'x.pt')\n    return open('x').read()\n")
    assert _io_uses(str(path)) == ["line 3: imports os.path", "line 5: calls numpy.save", "line 6: calls torch.save",
                                   "line 7: calls open"]
