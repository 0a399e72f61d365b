"""scripts/install.sh against a fake interpreter (no network), the lock file, runtime/versions.py, LICENSE, CITATION."""

import json
import os
import re
import subprocess
import sys
from importlib import metadata

import pytest
from conftest import REPO

from runtime.versions import PACKAGES, package_versions

# A stand-in for PYTHON: `-c CODE ARGS` runs CODE with importlib.metadata.version answering from the JSON table
# in $FAKE_DISTS (unlisted = not installed); `-m pip ...` is logged to $FAKE_PIP_LOG (with the content of the -r/-c
# files it names) and a `torch==V` argument "installs" torch V into the table. Anything else fails.
SHIM = '''#!{python}
import importlib.metadata as md
import json
import os
import sys

table_path, log_path = os.environ["FAKE_DISTS"], os.environ["FAKE_PIP_LOG"]
table = json.load(open(table_path))
args = sys.argv[1:]
if args[:2] == ["-m", "pip"]:
    files = {{a: open(a).read() for a in args if os.path.isfile(a)}}
    with open(log_path, "a") as log:
        log.write(json.dumps({{"argv": args[2:], "files": files}}) + "\\n")
    for a in args:
        if a.startswith("torch=="):
            table["torch"] = a[len("torch=="):]
    json.dump(table, open(table_path, "w"))
    sys.exit(0)
if args[:1] != ["-c"]:
    sys.exit(f"fake python: unexpected call {{args}}")


def version(name):
    if table.get(name) is None:
        raise md.PackageNotFoundError(name)
    return table[name]


md.version = version
sys.argv = ["-c", *args[2:]]
exec(compile(args[1], "<string>", "exec"), {{"__name__": "__main__"}})
'''


def _install(tmp_path, dists: dict, *args, **env) -> tuple[subprocess.CompletedProcess, list[dict]]:
    """Run install.sh with the fake interpreter over `dists`; the result and the pip calls it made."""
    shim = tmp_path / "python"
    shim.write_text(SHIM.format(python=sys.executable))
    shim.chmod(0o755)
    (tmp_path / "dists.json").write_text(json.dumps(dists))
    log = tmp_path / "pip.log"
    full_env = {**os.environ, "PYTHON": str(shim), "FAKE_DISTS": str(tmp_path / "dists.json"),
                "FAKE_PIP_LOG": str(log), **env}
    done = subprocess.run(["bash", os.path.join(REPO, "scripts", "install.sh"), *args], env=full_env,
                          capture_output=True, text=True, timeout=60)
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return done, calls


def _requirements(call: dict) -> tuple[list[str], list[str]]:
    """The requirement and constraint lines of a `pip install -r R -c C` call."""
    argv = call["argv"]
    return (call["files"][argv[argv.index("-r") + 1]].splitlines(),
            call["files"][argv[argv.index("-c") + 1]].splitlines())


def _names(lines) -> set[str]:
    return {re.split(r"[\s<>=!~;@\[]", line, maxsplit=1)[0].lower() for line in lines}


def _floor() -> str:
    (floor,) = re.findall(r"^torch>=([\d.]+)", open(os.path.join(REPO, "requirements.txt")).read(), re.M)
    return floor


def test_requirements_torch_floor_covers_grad_scaler():
    assert tuple(int(p) for p in _floor().split(".")) >= (2, 3)  # torch.amp.GradScaler appeared in 2.3


def test_old_torch_stops_before_pip(tmp_path):
    done, calls = _install(tmp_path, {"torch": "2.1.0+cu121"})
    assert done.returncode != 0 and calls == []
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "torch 2.1.0+cu121" in lines[0] and f"torch>={_floor()}" in lines[0]
    assert "--index-url https://download.pytorch.org/whl/" in lines[0]


def test_existing_torch_is_pinned_and_requirement_files_are_followed(tmp_path):
    done, calls = _install(tmp_path, {"torch": "2.5.1+cu124"}, "requirements-dev.txt")
    assert done.returncode == 0, done.stderr
    assert len(calls) == 1 and calls[0]["argv"][0] == "install"  # no torch install of its own
    requirements, constraints = _requirements(calls[0])
    assert constraints == ["torch==2.5.1+cu124"]
    assert {"torch", "numpy", "opencv-python-headless", "pytest", "ruff"} <= _names(requirements)
    assert not any(line.startswith(("-r", "#")) for line in requirements)


def test_missing_torch_is_installed_first_then_pinned(tmp_path):
    done, calls = _install(tmp_path, {}, TORCH_VERSION="2.13.0")
    assert done.returncode == 0, done.stderr
    assert [c["argv"][-1] for c in calls[:1]] == ["torch==2.13.0"] and len(calls) == 2
    assert _requirements(calls[1])[1] == ["torch==2.13.0"]


@pytest.mark.parametrize("gui", ["opencv-python", "opencv-contrib-python"])
def test_gui_opencv_build_is_kept(tmp_path, gui):
    done, calls = _install(tmp_path, {"torch": "2.13.0", gui: "4.10.0.84"})
    assert done.returncode == 0, done.stderr
    requirements, _ = _requirements(calls[-1])
    assert "opencv-python-headless" not in _names(requirements) and "numpy" in _names(requirements)
    assert gui in done.stderr


def test_headless_opencv_is_installed_without_a_gui_build(tmp_path):
    done, calls = _install(tmp_path, {"torch": "2.13.0", "opencv-python-headless": "4.10.0.84"})
    assert done.returncode == 0, done.stderr
    assert "opencv-python-headless" in _names(_requirements(calls[-1])[0])


def _requirement_names(name: str) -> set[str]:
    lines = [line.split("#")[0].strip() for line in open(os.path.join(REPO, name))]
    return _names(line for line in lines if line and not line.startswith("-r"))


def test_lock_pins_exactly_the_direct_dependencies():
    lines = [line.strip() for line in open(os.path.join(REPO, "requirements-lock.txt")) if line.strip()[:1] not in "#"]
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][0-9A-Za-z.+]*", line) for line in lines), lines
    direct = _requirement_names("requirements.txt") | _requirement_names("requirements-dev.txt")
    assert _names(lines) == direct and len(lines) == len(direct)
    assert set(PACKAGES) == direct  # runtime/versions.py reports the same packages


def test_package_versions_reports_installed_builds():
    versions = package_versions()
    assert versions["torch"] == metadata.version("torch") and versions["pytest"] == metadata.version("pytest")

    installed = {"torch": "2.5.1+cu124", "numpy": "2.0.0", "opencv-contrib-python": "4.10.0.84"}

    def fake(name):
        if name not in installed:
            raise metadata.PackageNotFoundError(name)
        return installed[name]

    versions = package_versions(fake)
    assert versions["opencv-contrib-python"] == "4.10.0.84" and "opencv-python-headless" not in versions
    assert versions["torch"] == "2.5.1+cu124" and versions["scipy"] is None and len(versions) == len(PACKAGES)
    installed.pop("opencv-contrib-python")
    assert package_versions(fake)["opencv-python-headless"] is None


def test_license_and_citation():
    assert "MIT License" in open(os.path.join(REPO, "LICENSE")).read()
    text = open(os.path.join(REPO, "CITATION.cff")).read()
    assert "Adversarial PoseNet: A Structure-aware Convolutional Network" in text and "1705.00389" in text
    assert "Stacked Hourglass Networks for Human Pose Estimation" in text
    yaml = pytest.importorskip("yaml")
    cff = yaml.safe_load(text)
    assert cff["cff-version"] == "1.2.0" and cff["title"] == "Adversarial PoseNet in PyTorch"
    authors = {r["year"]: [a["family-names"] for a in r["authors"]] for r in cff["references"]}
    assert authors == {2017: ["Chen", "Shen", "Wei", "Liu", "Yang"], 2016: ["Newell", "Yang", "Deng"]}
