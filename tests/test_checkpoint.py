"""The checkpoint file (checkpoint/): plain types only, so every torch from requirements.txt's floor up loads it
with ``weights_only=True``; schedules and loss scalers round-trip; an older format is refused by --resume with
one line.

The floor itself is proved by ``test_the_floor_torch_loads_resumes_and_tests_our_checkpoints`` when
``POSE_FLOOR_PYTHON`` names a Python whose torch is the floor (a throwaway venv, outside the repository):

    python -m venv /tmp/venv-floor && /tmp/venv-floor/bin/pip install torch==2.3.0 "numpy<2" \\
        opencv-python-headless h5py scipy tqdm matplotlib
    POSE_FLOOR_PYTHON=/tmp/venv-floor/bin/python python -m pytest tests/test_checkpoint.py -k floor -s
"""

from __future__ import annotations

import collections
import os
import pathlib
import pickletools
import re
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch
from conftest import error_line

import train_adversarial
import train_supervised
from checkpoint import FORMAT_VERSION, load_checkpoint, load_training_state, plain_problem, save_checkpoint

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLOOR_PYTHON = os.environ.get("POSE_FLOOR_PYTHON")
# what torch.save itself writes for tensors and state dicts; anything else is an object the weights-only
# loader of some torch version may refuse (collections.Counter before 2.4), or code a crafted file would run
ALLOWED_GLOBALS = {("torch._utils", "_rebuild_tensor_v2"), ("collections", "OrderedDict")}


def pickled_globals(path) -> set[tuple[str, str]]:
    """(module, name) of every GLOBAL and STACK_GLOBAL in the pickle of a torch.save zip file."""
    with zipfile.ZipFile(path) as z:
        data = z.read(next(n for n in z.namelist() if n.endswith("/data.pkl")))
    found, pushed, memo = set(), [], {}
    for op, arg, _ in pickletools.genops(data):
        if op.name == "GLOBAL":
            found.add(tuple(arg.split(" ", 1)))
        elif op.name == "STACK_GLOBAL":
            found.add((pushed[-2], pushed[-1]))
        elif op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
            pushed.append(arg)
        elif op.name in ("BINPUT", "LONG_BINPUT", "MEMOIZE") and pushed:
            memo[arg if op.name != "MEMOIZE" else len(memo)] = pushed[-1]
        elif op.name in ("BINGET", "LONG_BINGET"):
            pushed.append(memo.get(arg))
    return found


def _is_allowed(module: str, name: str) -> bool:
    return (module, name) in ALLOWED_GLOBALS or (module == "torch" and name.endswith("Storage"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A finished 1-epoch adversarial run (P, C, their optimisers and schedules) and a supervised one in fp16
    (a GradScaler's state in the checkpoint)."""
    root = tmp_path_factory.mktemp("ckpt-runs")
    common = ["--config", "config.tiny", "--device", "cpu", "--save_root", str(root), "--max_train_samples", "8",
              "--max_val_samples", "4", "--epochs", "1"]
    train_adversarial.main([*common, "--modelName", "adv"])
    train_supervised.main([*common, "--modelName", "fp16", "--set", "amp=fp16"])
    return root


@pytest.mark.parametrize("name", ["adv", "fp16"])
def test_a_real_checkpoint_pickles_nothing_but_tensors_and_plain_values(runs, name):
    path = runs / name / "last.pt"
    found = pickled_globals(path)
    assert ("torch._utils", "_rebuild_tensor_v2") in found  # the scan sees what torch.save writes
    assert {g for g in found if not _is_allowed(*g)} == set()
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    assert ckpt["format_version"] == FORMAT_VERSION and plain_problem(ckpt) is None
    assert name != "fp16" or ckpt["scalers"]["generator"]["scale"] > 0


def test_the_scan_finds_a_counter_as_older_checkpoints_held_it(tmp_path):
    torch.save({"milestones": collections.Counter([3, 5])}, tmp_path / "old.pt")
    assert ("collections", "Counter") in pickled_globals(tmp_path / "old.pt")


@pytest.mark.parametrize(("value", "named"), [
    (pathlib.Path("a"), "checkpoint['x']: pathlib.PosixPath"),
    (collections.Counter([1]), "checkpoint['x']: collections.Counter"),
    (np.float64(1.0), "checkpoint['x']: numpy.float64"),
    ([1, torch.nn.Parameter(torch.zeros(1))], "checkpoint['x'][1]: torch.nn.parameter.Parameter"),
    ({pathlib.Path("k"): 2}, "checkpoint['x'] key PosixPath('k'): pathlib.PosixPath"),
])
def test_save_refuses_anything_but_plain_types_and_writes_nothing(tmp_path, value, named):
    with pytest.raises(TypeError, match=re.escape(named)):
        save_checkpoint({"x": value, "ok": [1, 2.0, "s", None, True, torch.zeros(2)]}, str(tmp_path / "c.pt"))
    assert os.listdir(tmp_path) == []


def test_schedules_and_loss_scalers_round_trip(tmp_path, runs):
    """MultiStepLR's milestones go to disk as a dict and come back a Counter: the schedule steps on as it would
    have; an fp16 scaler gets its scale back, a disabled one stays untouched."""
    net = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(net.parameters(), lr=1.0)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [2, 4, 4], 0.5)
    for _ in range(3):
        opt.step()
        sched.step()
    ckpt = torch.load(runs / "fp16" / "last.pt", map_location="cpu", weights_only=True)
    saved = {**ckpt, "schedulers": {"generator": {**sched.state_dict(),
                                                  "milestones": dict(sched.state_dict()["milestones"])}}}
    fresh_opt = torch.optim.SGD(net.parameters(), lr=1.0)
    fresh = torch.optim.lr_scheduler.MultiStepLR(fresh_opt, [9], 0.5)
    scaler = torch.amp.GradScaler("cpu", enabled=True)
    load_training_state({**saved, "optimizers": {"generator": opt.state_dict()}}, {}, {"generator": fresh_opt},
                        {"generator": fresh}, {"generator": scaler})
    assert isinstance(fresh.milestones, collections.Counter) and fresh.milestones == sched.milestones
    for _ in range(2):  # the double milestone at 4 halves twice
        for o, s in ((opt, sched), (fresh_opt, fresh)):
            o.step()
            s.step()
    assert fresh.get_last_lr() == sched.get_last_lr() == [0.125]
    assert scaler.get_scale() == ckpt["scalers"]["generator"]["scale"]


def test_resume_of_an_older_format_is_refused_with_one_line(tmp_path, capsys, runs):
    ckpt = load_checkpoint(str(runs / "adv" / "last.pt"))
    ckpt.pop("_loaded_from")
    ckpt["format_version"] = 2
    run_dir = tmp_path / "old"
    run_dir.mkdir()
    torch.save(ckpt, run_dir / "last.pt")
    line = error_line(train_adversarial, ["--resume", str(run_dir), "--epochs", "2"], capsys)
    assert line == (f"error: --resume {run_dir}/last.pt: checkpoint format 2, this version resumes format "
                    f"{FORMAT_VERSION} only (README, Resume); start a run from its weights with --pretrained, or "
                    f"resume it with the version that wrote it")


FLOOR_PROOF = """
import sys, torch
path = sys.argv[1]
ckpt = torch.load(path, weights_only=True, map_location="cpu")
print(f"torch {torch.__version__} loaded {path} weights_only=True: format {ckpt['format_version']}, "
      f"{len(ckpt)} keys, schedulers {sorted(ckpt['schedulers'])}")
"""


@pytest.mark.skipif(not FLOOR_PYTHON, reason="POSE_FLOOR_PYTHON names no Python with the floor torch")
def test_the_floor_torch_loads_resumes_and_tests_our_checkpoints(runs, tmp_path):
    """The checkpoints this torch wrote, read by the floor torch: a plain weights-only load, then the trainer's
    --resume and test.py, both run by the floor Python."""
    with open(os.path.join(REPO, "requirements.txt")) as f:
        floor = re.search(r"^torch>=([\d.]+)", f.read(), re.MULTILINE).group(1)
    version = subprocess.run([FLOOR_PYTHON, "-c", "import torch; print(torch.__version__)"], capture_output=True,
                             text=True, check=True).stdout.strip()
    parts = floor.split(".")
    assert version.split("+")[0].split(".")[:len(parts)] == parts, f"{FLOOR_PYTHON}: torch {version}, floor {floor}"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def floor_run(*argv: str) -> str:
        done = subprocess.run([FLOOR_PYTHON, *argv], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        print(done.stdout.strip().splitlines()[-1])  # the proof, with -s
        return done.stdout

    for name in ("adv", "fp16"):
        assert f"torch {version} loaded" in floor_run("-c", FLOOR_PROOF, str(runs / name / "last.pt"))
    resumed = tmp_path / "adv"
    shutil.copytree(runs / "adv", resumed)
    floor_run("train_adversarial.py", "--resume", str(resumed), "--epochs", "2")
    assert torch.load(resumed / "last.pt", weights_only=True)["state"]["epoch"] == 2  # and back on this torch
    out = floor_run("test.py", "--checkpoint", str(runs / "fp16" / "best.pt"), "--dataset", "synthetic",
                    "--output", str(tmp_path / "test"), "--max_samples", "4", "--num_pictures", "0")
    assert "metrics:" in out
    print(f"floor proof: {sys.executable} torch {torch.__version__} wrote, {FLOOR_PYTHON} torch {version} read")


@pytest.mark.parametrize("part, edit, expected", [
    ("model_args", {"channels": 10**9}, "model_args: channels=1000000000 is outside its range [4, 4096]"),
    ("model_args", {"num_joints": 10**6}, "model_args: num_joints=1000000 should be an int in [1, 256]"),
    ("model_args", {"num_stacks": 2.5}, "model_args: num_stacks=2.5 should be a"),
    ("model_args", {"channels": 32}, "the generator weights do not match its model_args (stem.0.weight is "),
    ("config", {"channels": 10**9}, "config: channels=1000000000 is outside its range [4, 4096]"),
])
def test_an_edited_checkpoint_is_refused_naming_the_file_and_its_flag(run_dir, tmp_path, capsys, part, edit,
                                                                       expected):
    """model_args no config could give are refused before G is built (channels=1e9 tried to allocate 147 GB);
    weights that do not fit their model_args name the first tensor. predict.py, test.py and the export alike."""
    import cv2

    import predict
    import test as test_entry
    from scripts import export

    ckpt = torch.load(run_dir / "best.pt", weights_only=True)
    ckpt[part].update(edit)
    path = tmp_path / "edited.pt"
    torch.save(ckpt, path)
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((64, 64, 3), np.uint8))
    line = error_line(predict, ["--checkpoint", str(path), "--image", str(tmp_path / "a.png"), "--output",
                                str(tmp_path / "out"), "--device", "cpu"], capsys)
    assert line.startswith(f"error: --checkpoint {path}: {expected}"), line
    line = error_line(test_entry, ["--checkpoint", str(path), "--dataset", "synthetic", "--output",
                                   str(tmp_path / "test"), "--device", "cpu"], capsys)
    assert line.startswith(f"error: --checkpoint {path}: {expected}"), line
    line = error_line(export, [str(path), str(tmp_path / "export.pt")], capsys)
    assert line.startswith(f"error: checkpoint {path}: {expected}"), line
    assert sorted(os.listdir(tmp_path)) == ["a.png", "edited.pt"]  # nothing written
