"""Issue 13's table of bad inputs and faults, one case per row: each ends in one ``error: ...`` line on stderr
naming the flag or file, with its exit code (2, or 130 for Ctrl-C), and leaves every earlier file as it was.

Rows covered elsewhere: an old checkpoint that needs a full pickle load (tests/test_cli_errors.py), missing
or mis-shaped annotation files and predictions (tests/test_data_errors.py), predict.py's folders and boxes
(tests/test_predict.py). In-process calls of the entry points' ``main`` where a fresh process is not needed;
a subprocess for the file-size limit and Ctrl-C, which act on a whole process.
"""

from __future__ import annotations

import errno
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time

import cv2
import h5py
import numpy as np
import pytest
import scipy.io
import torch
from conftest import REPO, error_line, fingerprint, last_line, lspet_joints
from conftest import lspet_folder as _lspet

import predict
import test as test_entry
import train_adversarial
import train_supervised
from checkpoint import load_checkpoint
from utils.errors import UserInputError

LINUX = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="finds a descriptor's file in /proc")


def train_args(save_root, *extra) -> list[str]:
    """A tiny synthetic run into ``save_root``: 2 steps of 4 images, 4 val images (8 exist: a larger limit
    than the split is fine)."""
    return ["--config", "config.tiny", "--dataset", "synthetic", "--device", "cpu", "--save_root", str(save_root),
            "--max_train_samples", "8", "--max_val_samples", "50", *extra]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> str:
    """save_root holding one finished 1-epoch run under the default name ``run``."""
    root = tmp_path_factory.mktemp("finished") / "runs"
    train_supervised.main(train_args(root))
    return str(root)


@pytest.fixture
def runs(tmp_path, finished_run) -> str:
    """A private copy of ``finished_run``'s save_root, for a test to fail over."""
    return shutil.copytree(finished_run, tmp_path / "runs")


# ---- a fresh run into a used run directory ----------------------------------------------------------

def test_fresh_run_into_a_used_run_directory_is_refused(runs, capsys):
    """The default name, the same --modelName again, and the adversarial trainer (a forgotten --resume)."""
    before = fingerprint(runs)
    for entry, extra in [(train_supervised, []), (train_supervised, ["--modelName", "run"]),
                         (train_adversarial, ["--modelName", "run"])]:
        line = error_line(entry, train_args(runs, *extra), capsys)
        assert os.path.join(runs, "run") in line and "--resume" in line and "--overwrite" in line
    assert fingerprint(runs) == before


def test_overwrite_moves_the_old_run_aside(runs, capsys):
    before = fingerprint(os.path.join(runs, "run"))
    train_supervised.main(train_args(runs, "--overwrite"))
    aside = [n for n in os.listdir(runs) if n.startswith("run.old-")]
    assert len(aside) == 1 and re.fullmatch(r"run\.old-\d{8}-\d{6}", aside[0])
    assert fingerprint(os.path.join(runs, aside[0])) == before
    assert "moved the old run aside" in capsys.readouterr().out
    assert load_checkpoint(os.path.join(runs, "run"))["state"]["epoch"] == 1


@pytest.mark.parametrize("name", ["../../x", "/abs/x", "..", "a/b"])
@pytest.mark.parametrize("flag", ["--model_name", "--modelName"])  # the seed's spelling stays an alias
def test_model_name_must_be_a_plain_name(tmp_path, capsys, name, flag):
    root = tmp_path / "deep" / "er" / "runs"
    line = error_line(train_supervised, train_args(root, flag, name), capsys)
    assert line.startswith("error: --model_name") and name in line
    assert os.listdir(tmp_path) == []  # nothing created, inside --save_root or outside it


# ---- a crafted checkpoint -----------------------------------------------------------------------------

class _RunsCode:
    """Unpickling this object calls ``os.mkdir(marker)``: what a crafted checkpoint could do with any call."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def test_crafted_checkpoint_runs_no_code(tmp_path, capsys):
    marker = tmp_path / "code-ran"
    crafted = str(tmp_path / "crafted.pt")
    torch.save({"generator": _RunsCode(str(marker)), "model_args": {}}, crafted)
    before = fingerprint(tmp_path)
    out = str(tmp_path / "out")
    for entry, args in [(train_supervised, train_args(tmp_path / "runs", "--resume", crafted)),
                        (train_adversarial, train_args(tmp_path / "runs", "--pretrained", crafted)),
                        (test_entry, ["--checkpoint", crafted, "--output", out]),
                        (predict, ["--checkpoint", crafted, "--image", crafted, "--output", out])]:
        line = error_line(entry, args, capsys)
        assert crafted in line and "--trust_checkpoint" in line
        assert not marker.exists()
    assert {n for n in os.listdir(tmp_path) if n != "out"} == {"crafted.pt"} and fingerprint(tmp_path) == before
    torch.load(crafted, weights_only=False)  # the test can fail: a full load does run the file's code
    assert marker.is_dir()


# ---- training that would do nothing -----------------------------------------------------------------

@pytest.mark.parametrize(("extra", "culprit"), [
    (["--batch_size", "9"], r"--batch_size: 9 is larger than the train set \(8 samples"),
    (["--max_train_samples", "3"], r"--batch_size: 4 is larger than the train set \(3 samples"),
    (["--max_train_samples", "0"], r"--max_train_samples: must be at least 1, got 0"),
    (["--epochs", "0"], r"epochs=0 is outside its range"),
    (["--epochs", "-3"], r"epochs=-3 is outside its range"),
])
def test_training_without_a_single_step_is_refused_before_any_work(tmp_path, capsys, extra, culprit):
    line = error_line(train_supervised, train_args(tmp_path / "runs", *extra), capsys)
    assert re.search(culprit, line), line
    assert os.listdir(tmp_path) == []  # not even the run directory


def test_resuming_a_finished_run_is_refused(runs, capsys):
    before = fingerprint(runs)
    line = error_line(train_supervised, ["--resume", os.path.join(runs, "run")], capsys)
    assert line.startswith("error: --epochs") and "already trained 1 of epochs=1" in line
    assert fingerprint(runs) == before


# ---- annotations: non-finite or absurd numbers, missing datasets, wrong dtypes ------------------------

def _joints(n: int, layout: str = "lspet") -> np.ndarray:
    joints = lspet_joints(n)
    return joints if layout == "lspet" else joints.transpose(1, 0, 2) * [[[1]], [[1]], [[0]]]  # LSP: 0 = visible


def _score(dataset: str, path: str, tmp_path, *extra) -> list[str]:
    """test.py in predictions mode: reads the dataset's annotations first."""
    return ["--predictions", str(tmp_path / "preds.h5"), "--dataset", dataset, "--path", path,
            "--output", str(tmp_path / "out"), *extra]


@pytest.mark.parametrize(("layout", "sample", "joint", "value", "shown"), [
    ("lspet", 7, 3, np.nan, "nan"), ("lspet", 12, 0, 1e30, "1e+30"), ("lspet", 2, 5, -np.inf, "-inf"),
    ("lsp", 1001, 13, np.nan, "nan"), ("lsp", 0, 2, 2e5, "200000"),
])
def test_non_finite_or_absurd_joint_coordinates_name_file_and_sample(tmp_path, capsys, layout, sample, joint,
                                                                       value, shown):
    joints = _joints(1002 if layout == "lsp" else 20, layout)
    if layout == "lsp":
        joints[0, joint, sample] = value  # x
    else:
        joints[joint, 1, sample] = value  # y
    root = _lspet(tmp_path / "data", joints)
    before = fingerprint(root)
    line = error_line(test_entry, _score(layout, root, tmp_path, "--split", "all"), capsys)
    name = f"im{sample + 1:04d}.jpg" if layout == "lsp" else f"im{sample + 1:05d}.jpg"
    assert os.path.join(root, "joints.mat") in line and f"sample {sample} ({name}) is {shown}" in line, line
    assert fingerprint(root) == before and not (tmp_path / "out" / "metrics.json").exists()


def test_an_unlabelled_lspet_joint_may_hold_anything(tmp_path):
    """LSPET's unlabelled joints carry junk coordinates in the real file (down to -842 px): not refused."""
    from datasets.lsp import LSPETDataset

    joints = _joints(20)
    joints[4, :, 3] = [np.nan, 1e30, 0]  # flag 0: not labelled
    ds = LSPETDataset(_lspet(tmp_path, joints), "all", box_margin=1.3, input_res=64, output_res=16, sigma=1.0,
                      mean=(0.5,) * 3, std=(0.25,) * 3, augmentation=None)
    assert not ds.ann.annotated[3, 4] and np.isfinite(ds.ann.joints).all()


def _mpii(root, split: str = "valid", n: int = 6, drop: tuple[str, ...] = (), **edits) -> str:
    """annot/<split>.h5 in the stacked-hourglass layout, without the datasets ``drop``, with ``edits``
    (key -> (sample, value)) applied."""
    rng = np.random.default_rng(1)
    arrays = {"imgname": np.array([f"{i:09d}.jpg".encode() for i in range(n)]),
              "center": rng.uniform(100, 500, (n, 2)), "scale": rng.uniform(1, 3, n),
              "part": rng.uniform(50, 600, (n, 16, 2)), "visible": np.ones((n, 16)),
              "normalize": rng.uniform(20, 60, n)}
    for key, (sample, value) in edits.items():
        arrays[key][sample] = value
    os.makedirs(os.path.join(root, "annot"), exist_ok=True)
    with h5py.File(os.path.join(root, "annot", f"{split}.h5"), "w") as f:
        for key, value in arrays.items():
            if key not in drop:
                f[key] = value
    return str(root)


@pytest.mark.parametrize(("key", "sample", "value", "shown"), [
    ("part", 4, np.nan, "nan"), ("part", 1, 1e30, "1e+30"), ("center", 2, np.inf, "inf"),
    ("scale", 3, np.nan, "nan"), ("scale", 0, 0.0, "0"), ("scale", 5, -2.0, "-2"),
    ("normalize", 1, np.nan, "nan"), ("normalize", 2, -1.0, "-1"),
])
def test_mpii_non_finite_or_absurd_numbers_name_file_and_sample(tmp_path, capsys, key, sample, value, shown):
    root = _mpii(tmp_path / "mpii", **{key: (sample, value)})
    line = error_line(test_entry, _score("mpii", root, tmp_path, "--split", "valid"), capsys)
    path = os.path.join(root, "annot", "valid.h5")
    assert path in line and f"'{key}' of sample {sample} ({sample:09d}.jpg) is {shown}" in line, line


@pytest.mark.parametrize("drop", [("part",), ("normalize",), ("visible",), ("part", "visible", "normalize")])
def test_mpii_train_or_valid_file_without_labels_is_refused(tmp_path, capsys, drop):
    """Once filled in silently: no part = nothing scored; no normalize = an all-NaN table; no visible = every
    joint occluded."""
    for split, flag in (("valid", "--split"), ("train", "--train_split")):
        root = _mpii(tmp_path / "mpii", split, drop=drop)
        if split == "valid":
            line = error_line(test_entry, _score("mpii", root, tmp_path, "--split", "valid"), capsys)
        else:
            _mpii(root, "valid")
            line = error_line(train_supervised, train_args(tmp_path / "runs", "--dataset", "mpii", "--path", root),
                              capsys)
        assert os.path.join(root, "annot", f"{split}.h5") in line and "missing dataset" in line, (flag, line)
        assert all(f"'{k}'" in line for k in drop)
    assert not (tmp_path / "runs").exists()


def test_mpii_test_file_needs_only_names_and_boxes(tmp_path):
    from datasets.mpii import MPIIDataset

    pipe = {"input_res": 64, "output_res": 16, "sigma": 1.0, "mean": (0.5,) * 3, "std": (0.25,) * 3,
            "augmentation": None}
    root = _mpii(tmp_path, "test", drop=("part", "visible", "normalize"))
    ds = MPIIDataset(root, "test", **pipe)
    assert len(ds) == 6 and not ds.ann.annotated.any() and np.isnan(ds.ann.ref_lengths).all()
    _mpii(tmp_path, "test", drop=("part", "visible", "normalize", "scale"))
    with pytest.raises(UserInputError, match=r"test\.h5: missing dataset 'scale'"):
        MPIIDataset(root, "test", **pipe)


def test_joints_of_the_wrong_type_and_a_corrupt_mat_file(tmp_path, capsys):
    root = tmp_path / "data"
    root.mkdir()
    mat = root / "joints.mat"
    scipy.io.savemat(mat, {"joints": "not numbers"})
    line = error_line(test_entry, _score("lspet", str(root), tmp_path), capsys)
    assert str(mat) in line and "'joints' holds <U11 values, expected numbers" in line
    scipy.io.savemat(mat, {"joints": _joints(20)})
    mat.write_bytes(mat.read_bytes()[:300])  # cut short
    line = error_line(test_entry, _score("lspet", str(root), tmp_path), capsys)
    assert f"cannot read {mat} as a MATLAB file" in line
    mat.write_bytes(b"")
    assert f"cannot read {mat} as a MATLAB file (MatReadError" in error_line(
        test_entry, _score("lspet", str(root), tmp_path), capsys)


def test_predictions_of_the_wrong_type(tmp_path, capsys):
    root = _lspet(tmp_path / "data", _joints(20))
    preds = tmp_path / "preds.h5"
    with h5py.File(preds, "w") as f:
        f["preds"] = np.full((2, 14, 2), b"x")
    before = fingerprint(tmp_path)
    line = error_line(test_entry, _score("lspet", root, tmp_path), capsys)
    assert str(preds) in line and "'preds' holds |S1 values, expected numbers" in line
    assert fingerprint(tmp_path) == before


# ---- empty splits -------------------------------------------------------------------------------------

def test_empty_val_or_test_split_is_refused_before_training_or_testing(tmp_path, capsys):
    root = _lspet(tmp_path / "lspet9", _joints(9))  # val = the last 9 // 10 = 0 samples
    line = error_line(train_supervised, train_args(tmp_path / "runs", "--dataset", "lspet", "--path", root), capsys)
    assert line.startswith("error: --val_split: the 'val' split of lspet") and root in line
    line = error_line(test_entry, _score("lspet", root, tmp_path), capsys)
    assert line.startswith("error: --split: the 'val' split of lspet") and root in line
    line = error_line(train_supervised, train_args(tmp_path / "runs", "--max_val_samples", "0"), capsys)
    assert line == "error: --max_val_samples: must be at least 1, got 0"
    line = error_line(test_entry, ["--predictions", "p.h5", "--max_samples", "0", "--output", str(tmp_path / "o")],
                      capsys)
    assert line == "error: --max_samples: must be at least 1, got 0"
    assert sorted(os.listdir(tmp_path)) == ["lspet9"]  # no run directory, and no --output folder left by test.py


# ---- out-of-range config values -----------------------------------------------------------------------

@pytest.mark.parametrize(("entry", "extra", "culprit"), [
    (train_supervised, ["--set", "input_res=100"], "input_res=100 must be a multiple of 4 * 2**depth = 16"),
    (train_supervised, ["--set", "output_res=20"], "output_res cannot be set: it is input_res / 4"),
    (train_supervised, ["--print_every", "0"], "print_every=0 is outside its range"),
    (train_supervised, ["--lr", "-1"], "lr=-1.0 is outside its range"),
    (train_supervised, ["--workers", "-2"], "workers=-2 is outside its range"),
    (train_supervised, ["--set", "scale_min=2.0"], "scale_min=2.0 exceeds scale_max"),
    (train_supervised, ["--set", "mean=(0.5,0.5)"], "mean=(0.5, 0.5) must be 3 finite numbers"),
    (train_supervised, ["--set", "depth=0"], "depth=0 is outside its range"),
    (train_supervised, ["--batch_size", "0"], "batch_size=0 is outside its range"),
    (train_supervised, ["--max_train_samples", "-5"], "--max_train_samples: must be at least 1, got -5"),
    (train_adversarial, ["--alpha", "nan"], "alpha=nan must be a finite number"),
])
def test_out_of_range_config_values(tmp_path, capsys, entry, extra, culprit):
    line = error_line(entry, train_args(tmp_path / "runs", *extra), capsys)
    assert culprit in line, line
    assert os.listdir(tmp_path) == []


# ---- a truncated JPEG ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lspet_truncated(tmp_path_factory) -> str:
    """LSPET layout, 17 photos (16 train, 1 val); train image 2 lost its second half."""
    root = tmp_path_factory.mktemp("lspet")
    rng = np.random.default_rng(0)
    _lspet(root, _joints(17))
    (root / "images").mkdir()
    for i in range(1, 18):
        cv2.imwrite(str(root / "images" / f"im{i:05d}.jpg"), rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    cut = root / "images" / "im00002.jpg"
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    assert cv2.imread(str(cut)) is not None  # OpenCV decodes it, grey-filled: the check is ours
    return str(root)


def test_truncated_jpeg_is_a_bad_image_named_and_skippable(tmp_path, capsys, lspet_truncated):
    args = train_args(tmp_path / "runs", "--dataset", "lspet", "--path", lspet_truncated, "--max_train_samples", "16")
    line = error_line(train_supervised, args, capsys)
    assert line == f"error: truncated image: {lspet_truncated}/images/im00002.jpg (a JPEG without its end marker: " \
                   f"cut short on copy or download)"
    train_supervised.main([*args, "--skip_bad_images", "--overwrite"])
    with open(tmp_path / "runs" / "run" / "log.jsonl") as f:
        assert [json.loads(line)["skipped_images"] for line in f] == [1]
    assert "skipped 1 unreadable images" in capsys.readouterr().out


# ---- a full disk --------------------------------------------------------------------------------------

def _no_space_for(monkeypatch, match) -> None:
    """From now on, the first write to a file whose path satisfies ``match`` writes 16 bytes, the next fails
    with ENOSPC, as a disk filling up mid-file does."""
    real, started = os.write, set()

    def write(fd, data):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            target = ""
        if match(target):
            if fd in started:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            started.add(fd)
            return real(fd, memoryview(data)[:16])
        return real(fd, data)

    monkeypatch.setattr(os, "write", write)


@pytest.fixture(scope="module")
def tested(finished_run, tmp_path_factory) -> tuple[str, list[str]]:
    """(output folder of a finished test.py run on the finished run's checkpoint, the test.py arguments)."""
    out = str(tmp_path_factory.mktemp("tested") / "out")
    args = ["--checkpoint", os.path.join(finished_run, "run", "last.pt"), "--output", out, "--workers", "0",
            "--max_samples", "4", "--num_pictures", "2"]
    test_entry.main(args)
    return out, args


@LINUX
@pytest.mark.parametrize("target", ["pictures", "pck_curve.png", "predictions.h5", "metrics.json"])
def test_test_py_on_a_full_disk_keeps_the_earlier_files(tmp_path, capsys, monkeypatch, tested, target):
    done, args = tested
    out = shutil.copytree(done, tmp_path / "out")
    args = [str(out) if a == done else a for a in args] + ["--overwrite"]
    before = fingerprint(out)
    suffix = ".png" if target == "pictures" else os.path.splitext(target)[1]
    folder = os.path.join(out, "pictures") if target == "pictures" else str(out)
    _no_space_for(monkeypatch, lambda p: os.path.dirname(p) == folder and os.path.basename(p).startswith(".tmp-")
                  and p.endswith(suffix))
    line = error_line(test_entry, args, capsys)
    shown = r"\S+/pictures/\d{5}_\S+\.png" if target == "pictures" else re.escape(os.path.join(out, target))
    assert re.fullmatch(rf"error: cannot write {shown}: No space left on device", line), line
    assert fingerprint(out) == before  # the failed file kept, nothing partial or temporary left


@LINUX
def test_predict_py_on_a_full_disk_keeps_the_earlier_json(tmp_path, capsys, monkeypatch, finished_run):
    image = str(tmp_path / "photo.png")
    cv2.imwrite(image, np.full((48, 40, 3), 90, np.uint8))
    args = ["--checkpoint", os.path.join(finished_run, "run"), "--image", image, "--output", str(tmp_path / "p")]
    predict.main(args)
    before = fingerprint(tmp_path / "p")
    _no_space_for(monkeypatch, lambda p: p.startswith(str(tmp_path / "p" / ".tmp-")) and p.endswith(".json"))
    line = error_line(predict, [*args, "--overwrite"], capsys)
    assert line == f"error: cannot write {tmp_path / 'p' / 'photo.json'}: No space left on device"
    assert fingerprint(tmp_path / "p") == before


@LINUX
def test_log_append_on_a_full_disk_leaves_the_log_whole(runs, capsys, monkeypatch):
    log = os.path.join(runs, "run", "log.jsonl")
    before = fingerprint(runs)
    _no_space_for(monkeypatch, lambda p: p == log)
    line = error_line(train_supervised, ["--resume", os.path.join(runs, "run"), "--epochs", "2"], capsys)
    assert line == f"error: cannot write {log}: No space left on device"
    after = fingerprint(runs)
    assert after.pop("run/config.json") != before.pop("run/config.json")  # records epochs=2 now, as it should
    assert after == before  # the log without a partial line, the checkpoints as they were


def _file_size_limit(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


@pytest.mark.slow
def test_checkpoint_write_past_a_file_size_limit_keeps_the_last_checkpoint(runs):
    """A real failing write in a fresh process: checkpoints (~450 kB) exceed the limit, the log does not."""
    run_dir = os.path.join(runs, "run")
    with open(os.path.join(run_dir, "log.jsonl"), "rb") as f:
        log = f.read()
    before = fingerprint(run_dir)
    out = subprocess.run([sys.executable, "train_supervised.py", "--resume", run_dir, "--epochs", "2"], cwd=REPO,
                         capture_output=True, text=True, timeout=120, preexec_fn=_file_size_limit(100_000),
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr and out.stderr.count("error:") == 1
    line = last_line(out.stderr)
    assert re.fullmatch(rf"error: cannot write {re.escape(run_dir)}/(best|last)\.pt: File too large; "
                        r"the previous checkpoint is unchanged", line), line
    after = fingerprint(run_dir)
    assert {k: v for k, v in after.items() if k.endswith(".pt")} == {k: v for k, v in before.items()
                                                                       if k.endswith(".pt")}
    assert set(after) == set(before)  # no temp file
    with open(os.path.join(run_dir, "log.jsonl"), "rb") as f:
        assert f.read().startswith(log)


# ---- a log cut short, Ctrl-C --------------------------------------------------------------------------

def test_resume_drops_a_partial_last_log_line_and_says_so(runs, capsys):
    log = os.path.join(runs, "run", "log.jsonl")
    with open(log, "a") as f:
        f.write('{"kind": "epoch", "epoch": 1, "iterat')
    train_supervised.main(["--resume", os.path.join(runs, "run"), "--epochs", "2"])
    assert f"note: dropped its partial last line 2 from {log}" in capsys.readouterr().out
    with open(log) as f:
        assert [json.loads(line)["epoch"] for line in f] == [0, 1]


@pytest.mark.slow
def test_ctrl_c_ends_with_one_line_naming_the_last_checkpoint(tmp_path):
    cmd = [sys.executable, "train_supervised.py", *train_args(tmp_path / "runs", "--epochs", "1000")]
    last = tmp_path / "runs" / "run" / "last.pt"
    # a suite started in the background of a non-interactive shell inherits SIGINT ignored, and so would the
    # trainer: give it the default disposition, so that Python installs its Ctrl-C handler as in a terminal
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 90
        while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert last.exists(), "no checkpoint within 90 s"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.count("error:") == 1
    assert last_line(err) == f"error: interrupted; last good checkpoint kept: {last}"
    assert load_checkpoint(str(last))["state"]["epoch"] >= 1
    assert not [n for n in os.listdir(last.parent) if n.startswith(".tmp-")]
