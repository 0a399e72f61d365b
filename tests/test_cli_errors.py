"""Bad input to the entry scripts ends in one line ``error: ...`` on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
import scipy.io
import torch
from conftest import REPO, error_line, fingerprint

import predict
import test as test_entry
import train_adversarial
import train_supervised
from checkpoint import load_checkpoint
from config import load_config
from models import build_generator
from training.build import generator_args
from training.run import RunSpec, build_run, save
from utils.errors import UserInputError, one_line

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")


def train(tmp_path, *extra):
    return ["--config", "config.tiny", "--device", "cpu", "--save_root", str(tmp_path / "runs"), "--epochs", "1",
            "--max_train_samples", "8", "--max_val_samples", "4", *extra]


@pytest.fixture(scope="module")
def run16(tmp_path_factory) -> str:
    """Run directory with an (untrained) supervised synthetic checkpoint, 16 joints."""
    run_dir = str(tmp_path_factory.mktemp("ckpt") / "run16")
    spec = RunSpec(dataset="synthetic", path=None, train_split="train", val_split="val", run_dir=run_dir,
                   device="cpu", max_train_samples=8, max_val_samples=4)
    save(build_run(load_config("tiny", {"method": "supervised"}), spec), "last.pt")
    return run_dir


@pytest.fixture(scope="module")
def ckpt14(run16, tmp_path_factory) -> str:
    """The same checkpoint with a 14-joint generator, still claiming the 16-joint synthetic dataset."""
    ckpt = load_checkpoint(run16)
    args = generator_args(load_config("tiny"), 14)
    ckpt.update(generator=build_generator(args).state_dict(), model_args=args)
    path = str(tmp_path_factory.mktemp("ckpt") / "joints14.pt")
    torch.save(ckpt, path)
    return path


@pytest.fixture
def afile(tmp_path) -> str:
    """A directory path below a regular file: not creatable even by root."""
    (tmp_path / "afile").write_text("x")
    return str(tmp_path / "afile" / "sub")


# ---- images ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lspet_bad(tmp_path_factory) -> str:
    """LSPET layout, 17 images (16 train, 1 val): train image 3 missing, train image 5 not an image."""
    root = tmp_path_factory.mktemp("lspet")
    rng = np.random.default_rng(0)
    joints = np.ones((14, 3, 17))
    joints[:, :2] = rng.uniform(10, 54, (14, 2, 17))
    scipy.io.savemat(root / "joints.mat", {"joints": joints})
    (root / "images").mkdir()
    for i in range(1, 18):
        cv2.imwrite(str(root / "images" / f"im{i:05d}.jpg"), rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    os.unlink(root / "images" / "im00003.jpg")
    (root / "images" / "im00005.jpg").write_bytes(b"this is not a jpeg")
    return str(root)


BAD_IMAGE = r"error: (image not found: \S+im00003\.jpg|cannot decode image: \S+im00005\.jpg)"


def test_unreadable_training_image_names_the_file(tmp_path, capsys, lspet_bad):
    line = error_line(train_supervised, train(tmp_path, "--dataset", "lspet", "--path", lspet_bad,
                                              "--max_train_samples", "16"), capsys)
    assert re.match(BAD_IMAGE, line), line


@pytest.mark.slow  # a training in a process of its own, with DataLoader worker processes
def test_unreadable_image_in_a_dataloader_worker_is_one_line_too(tmp_path, lspet_bad):
    """A fresh process, as users run it: the worker's error comes back without its traceback. The missing
    image is put back (a missing file is found before training); the undecodable one is found by a worker."""
    data = shutil.copytree(lspet_bad, tmp_path / "lspet")
    shutil.copy(data / "images" / "im00001.jpg", data / "images" / "im00003.jpg")
    cmd = [sys.executable, "train_supervised.py", *train(tmp_path, "--dataset", "lspet", "--path", str(data),
                                                         "--max_train_samples", "16", "--workers", "2")]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 2
    assert "Traceback" not in out.stderr and "Caught" not in out.stderr and out.stderr.count("error:") == 1
    assert re.match(r"error: cannot decode image: \S+im00005\.jpg", re.split(r"[\r\n]+", out.stderr.strip())[-1]), \
        out.stderr


def test_worker_error_message_is_reduced_to_the_original_line():
    err = UserInputError("Caught UserInputError in DataLoader worker process 0.\nOriginal Traceback (most recent "
                         "call last):\n  File \"x.py\", line 1, in f\n    raise UserInputError(msg)\n"
                         "utils.errors.UserInputError: image not found: /d/im1.jpg\n")
    assert one_line(err) == "image not found: /d/im1.jpg"
    assert one_line(UserInputError("plain: message")) == "plain: message"


def test_skip_bad_images_counts_them_in_the_log_and_on_screen(tmp_path, capsys, lspet_bad):
    train_supervised.main(train(tmp_path, "--dataset", "lspet", "--path", lspet_bad, "--max_train_samples", "16",
                                "--skip_bad_images", "--modelName", "skip"))
    with open(tmp_path / "runs" / "skip" / "log.jsonl") as f:
        log = [json.loads(line) for line in f]
    assert [(r["epoch"], r["skipped_images"]) for r in log] == [(0, 2)]
    assert "skipped 2 unreadable images" in capsys.readouterr().out


def test_predict_missing_or_undecodable_image(tmp_path, capsys, run16):
    line = error_line(predict, ["--checkpoint", run16, "--image", str(tmp_path / "nope.png"),
                                "--output", str(tmp_path / "o")], capsys)
    assert "nope.png" in line and "not found" in line
    (tmp_path / "bad.png").write_bytes(b"garbage")
    line = error_line(predict, ["--checkpoint", run16, "--image", str(tmp_path / "bad.png"),
                                "--output", str(tmp_path / "o")], capsys)
    assert "cannot decode image" in line and "bad.png" in line


# ---- checkpoints -------------------------------------------------------------------------------

def test_checkpoint_with_another_joint_count(tmp_path, capsys, ckpt14):
    line = error_line(test_entry, ["--checkpoint", ckpt14, "--dataset", "synthetic", "--output",
                                   str(tmp_path / "t"), "--workers", "0"], capsys)
    assert "14 joints" in line and "16" in line
    line = error_line(predict, ["--checkpoint", ckpt14, "--image", "x.png", "--output", str(tmp_path / "p")],
                      capsys)
    assert "14 joints" in line and "16" in line
    line = error_line(train_supervised, train(tmp_path, "--resume", ckpt14), capsys)
    assert line.startswith("error: --resume") and "'num_joints': 14" in line and "'num_joints': 16" in line
    line = error_line(train_adversarial, train(tmp_path, "--pretrained", ckpt14), capsys)
    assert line.startswith("error: --pretrained") and "architecture differs" in line


def test_resume_with_another_architecture_or_method(tmp_path, capsys, run16):
    line = error_line(train_supervised, train(tmp_path, "--resume", run16, "--set", "channels=8"), capsys)
    assert "generator architecture" in line and "'channels': 16" in line and "'channels': 8" in line
    line = error_line(train_adversarial, train(tmp_path, "--resume", run16), capsys)
    assert "supervised run" in line
    line = error_line(train_supervised, train(tmp_path, "--resume", str(tmp_path)), capsys)
    assert "checkpoint not found" in line


def test_file_that_is_not_a_checkpoint(tmp_path, capsys):
    (tmp_path / "junk.pt").write_bytes(os.urandom(256))
    for entry, args in [(test_entry, ["--dataset", "synthetic", "--output", str(tmp_path / "t")]),
                        (predict, ["--image", "x.png"]), (train_supervised, train(tmp_path)[:4])]:
        flag = "--resume" if entry is train_supervised else "--checkpoint"
        assert "cannot load checkpoint" in error_line(entry, [flag, str(tmp_path / "junk.pt"), *args], capsys)


def test_checkpoint_that_needs_a_full_pickle_load_is_refused_unless_trusted(tmp_path, capsys, run16):
    """A checkpoint holding other objects (a NumPy RNG state as a pickled tuple with an ndarray, as older formats
    did) is not junk: the error names --trust_checkpoint, and with the flag it loads."""
    ckpt = load_checkpoint(run16)
    ckpt["rng_ranks"][0]["numpy"] = np.random.get_state()
    old = str(tmp_path / "old.pt")
    torch.save(ckpt, old)
    args = ["--checkpoint", old, "--dataset", "synthetic", "--output", str(tmp_path / "t"), "--workers", "0",
            "--max_samples", "2", "--num_pictures", "0"]
    line = error_line(test_entry, args, capsys)
    assert "--trust_checkpoint" in line and "cannot load checkpoint" not in line
    assert test_entry.main([*args, "--trust_checkpoint"])["count"] > 0


# ---- flags -------------------------------------------------------------------------------------

@NO_CUDA
def test_cuda_device_without_cuda(tmp_path, capsys, run16):
    for entry, args in [(train_supervised, train(tmp_path)),
                        (test_entry, ["--checkpoint", run16, "--output", str(tmp_path / "t")]),
                        (predict, ["--checkpoint", run16, "--image", "x.png", "--output", str(tmp_path / "p")])]:
        line = error_line(entry, [*args, "--device", "cuda"], capsys)
        assert "CUDA is not available" in line


@pytest.mark.parametrize(("flag", "value", "expected"), [
    ("--batch_size", "0", "must be at least 1, got 0"),
    ("--workers", "-5", "-5; expected 0 (this process) or more"),
    ("--num_pictures", "-1", "must be 0 (none) or more, got -1"),
])
def test_test_py_counts_out_of_range(tmp_path, capsys, run16, flag, value, expected):
    """Once a DataLoader traceback (--batch_size 0, --workers -5), or N-1 pictures written over the user's
    own pictures/ without a word (--num_pictures -1 also skipped the check of that folder)."""
    out = tmp_path / "t"
    (out / "pictures").mkdir(parents=True)
    (out / "pictures" / "00000_00000.png").write_bytes(b"mine")
    before = fingerprint(out)
    line = error_line(test_entry, ["--checkpoint", run16, "--output", str(out), "--workers", "0", "--max_samples",
                                   "2", flag, value], capsys)
    assert line == f"error: {flag}: {expected}"
    assert fingerprint(out) == before


@pytest.mark.parametrize("flag", ["--train_split", "--val_split"])
@pytest.mark.parametrize("dataset", ["synthetic", "lspet"])
def test_unknown_split_names_the_trainers_flag(tmp_path, capsys, request, flag, dataset):
    """Once ``--split:``, a flag the trainers do not have."""
    path = ["--path", request.getfixturevalue("lspet_root")] if dataset == "lspet" else []
    line = error_line(train_supervised, train(tmp_path, "--dataset", dataset, *path, flag, "foo"), capsys)
    assert line.startswith(f"error: {flag}: ") and "no split 'foo'" in line, line


def test_unknown_set_key_lists_close_valid_keys(tmp_path, capsys):
    line = error_line(train_supervised, train(tmp_path, "--set", "chanels=8"), capsys)
    assert "unknown config key 'chanels'" in line and "channels" in line


def test_unknown_dataset(tmp_path, capsys):
    for entry, args in [(train_supervised, train(tmp_path)), (test_entry, ["--predictions", "p.h5", "--output",
                                                                           str(tmp_path / "t")])]:
        line = error_line(entry, [*args, "--dataset", "coco"], capsys)
        assert "unknown dataset 'coco'" in line and "synthetic" in line


def test_output_directory_not_writable(tmp_path, capsys, afile, run16):
    line = error_line(train_supervised, [*train(tmp_path), "--save_root", afile], capsys)
    assert "cannot write" in line and afile in line
    line = error_line(test_entry, ["--checkpoint", run16, "--output", afile], capsys)
    assert line.startswith("error: --output") and afile in line
    line = error_line(predict, ["--checkpoint", run16, "--image", "x.png", "--output", afile], capsys)
    assert line.startswith("error: --output") and afile in line


def test_tensorboard_flag_without_the_package(tmp_path, capsys):
    try:
        import tensorboard  # noqa: F401

        pytest.skip("tensorboard is installed")
    except ImportError:
        pass
    line = error_line(train_supervised, train(tmp_path, "--tensorboard"), capsys)
    assert "--tensorboard" in line and "not installed" in line and "pip install tensorboard" in line
