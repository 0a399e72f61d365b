"""Issue 23's table: nothing a user made is written over, a run folder belongs to one training, what can be
checked before work is, and no number that cannot be right is printed without a word. One test per row (or per
group of rows with one cause); the signal rows (SIGTERM, SIGUSR1, a video stopped by SIGTERM) are in
tests/test_preemption.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import types

import cv2
import h5py
import numpy as np
import pytest
import torch
from conftest import REPO, error_line, fingerprint
from conftest import lspet_folder as _lspet
from conftest import lspet_joints as _joints

import predict
import test as test_entry
import train_adversarial
import train_supervised
import training.run
from checkpoint import load_checkpoint
from datasets.synthetic import SyntheticDataset
from utils.errors import UserInputError


def train_args(save_root, *extra) -> list[str]:
    """A tiny synthetic run: 2 steps of 4 images per epoch, 4 val images."""
    return ["--config", "config.tiny", "--dataset", "synthetic", "--device", "cpu", "--save_root", str(save_root),
            "--max_train_samples", "8", "--max_val_samples", "4", *extra]


@pytest.fixture
def run_copy(tmp_path, tiny_run_dir) -> str:
    """A private copy of conftest's finished one-epoch run (its folder holds config.json, log.jsonl, best.pt,
    last.pt, curves.png)."""
    return str(shutil.copytree(tiny_run_dir, tmp_path / "runs" / "run"))


def _photo(path, shape=(48, 40, 3), value=90) -> str:
    cv2.imwrite(str(path), np.full(shape, value, np.uint8))
    return str(path)


# ---- row 1: predict.py writes beside its input -------------------------------------------------------

def test_predict_never_writes_over_an_input_or_an_existing_file(tmp_path, capsys, tiny_run_dir):
    folder = tmp_path / "D"
    folder.mkdir()
    scan, photo = _photo(folder / "scan.png"), _photo(folder / "photo.jpg")
    (folder / "photo.json").write_text('{"mine": "the user\'s own notes"}')
    before = fingerprint(folder)
    ckpt = ["--checkpoint", str(tiny_run_dir), "--output", str(folder)]
    for extra in ([], ["--overwrite"]):  # an input is never the output, --overwrite or not
        line = error_line(predict, [*ckpt, "--image", scan, *extra], capsys)
        assert line == f"error: --output: writing {scan} would replace the input {scan}; choose another --output"
    line = error_line(predict, [*ckpt, "--image", photo], capsys)
    assert f"1 file would be replaced ({folder / 'photo.json'})" in line and "--overwrite" in line
    line = error_line(predict, [*ckpt, "--image", str(folder)], capsys)  # the folder itself: its images are inputs
    assert "would replace the input" in line
    assert fingerprint(folder) == before

    predict.main([*ckpt, "--image", photo, "--overwrite"])
    assert f"replacing 1 earlier file (--overwrite): {folder / 'photo.json'}" in capsys.readouterr().out
    assert json.loads((folder / "photo.json").read_text())["image"] == photo


def test_predict_names_its_own_earlier_outputs_and_replaces_them_only_with_overwrite(tmp_path, capsys,
                                                                                    tiny_run_dir):
    photo, out = _photo(tmp_path / "photo.png"), tmp_path / "out"
    args = ["--checkpoint", str(tiny_run_dir), "--image", photo, "--output", str(out)]
    predict.main(args)
    before = fingerprint(out)
    line = error_line(predict, args, capsys)
    assert f"2 files would be replaced ({out / 'photo.json'}, {out / 'photo.png'})" in line
    assert fingerprint(out) == before
    predict.main([*args, "--overwrite"])
    assert f"replacing 2 earlier files (--overwrite): {out / 'photo.json'}, {out / 'photo.png'}" in \
        capsys.readouterr().out


def test_test_py_names_earlier_outputs_and_replaces_them_only_with_overwrite(tmp_path, capsys, tiny_run_dir):
    """The same rule for test.py's folder: metrics.json, predictions.h5, the curve, the pictures."""
    out = tmp_path / "out"
    args = ["--checkpoint", str(tiny_run_dir / "last.pt"), "--output", str(out), "--workers", "0",
            "--max_samples", "4", "--num_pictures", "1"]
    test_entry.main(args)
    before = fingerprint(out)
    line = error_line(test_entry, args, capsys)
    assert f"4 files would be replaced ({out / 'metrics.json'}, {out / 'predictions.h5'}" in line
    assert fingerprint(out) == before
    test_entry.main([*args, "--overwrite"])
    assert "replacing 4 earlier files (--overwrite)" in capsys.readouterr().out


def test_test_py_overwrite_with_fewer_pictures_leaves_only_this_runs(tmp_path, capsys, tiny_run_dir):
    """The earlier pictures named as replaced are replaced or removed: pictures/ is not a mix of two runs'."""
    out = tmp_path / "out"
    args = ["--checkpoint", str(tiny_run_dir / "last.pt"), "--output", str(out), "--workers", "0",
            "--max_samples", "4"]
    test_entry.main([*args, "--num_pictures", "4"])
    earlier = sorted(os.listdir(out / "pictures"))
    assert len(earlier) == 4
    capsys.readouterr()
    test_entry.main([*args, "--num_pictures", "1", "--overwrite"])
    printed = capsys.readouterr().out
    assert "replacing 7 earlier files (--overwrite)" in printed
    assert f"removed 3 earlier pictures not written again: {out / 'pictures' / earlier[1]}" in printed
    assert sorted(os.listdir(out / "pictures")) == earlier[:1]


# ---- row 2: --resume of a .pt file in a folder of other files ----------------------------------------

def _foreign_checkpoint(source: str, path, run_id: str | None) -> str:
    """A copy of checkpoint ``source`` under another name, of another run (``run_id``; None: an older file
    without one)."""
    ckpt = load_checkpoint(source)
    ckpt.pop("_loaded_from")
    if run_id is None:
        ckpt.pop("run_id", None)
    else:
        ckpt["run_id"] = run_id
    torch.save(ckpt, path)
    return str(path)


@pytest.mark.parametrize(("name", "run_id"), [("apn_epoch1.pt", "another-run"), ("apn_epoch1.pt", None),
                                              ("best.pt", None)])
def test_resume_never_continues_into_a_folder_of_other_files(tmp_path, capsys, tiny_run_dir, name, run_id):
    """The user's folder: their config.json and log.jsonl, another run's best.pt, and a checkpoint of some run
    (with its run id, or an older one without, even under a name the trainer uses)."""
    folder = tmp_path / "D"
    folder.mkdir()
    (folder / "config.json").write_text('{"my": "own config"}\n')
    (folder / "log.jsonl").write_text("my own log line\n")
    shutil.copy(tiny_run_dir / "best.pt", folder / "best.pt")
    resume = _foreign_checkpoint(str(tiny_run_dir / "last.pt"), folder / name, run_id)
    before = fingerprint(folder)
    line = error_line(train_supervised, ["--resume", resume, "--epochs", "2"], capsys)
    held = ", ".join(sorted({name, "best.pt", "config.json", "log.jsonl"}))
    assert line.startswith(f"error: --resume {resume}: run directory {folder} holds files of another run or of "
                           f"yours ({held})") and "--model_name" in line
    assert fingerprint(folder) == before


def test_resume_of_the_runs_own_best_or_a_lone_file_continues_in_its_folder(run_copy, tmp_path):
    train_supervised.main(["--resume", os.path.join(run_copy, "best.pt"), "--epochs", "2"])
    assert load_checkpoint(run_copy)["state"]["epoch"] == 2
    lone = tmp_path / "lone"
    lone.mkdir()
    shutil.copy(os.path.join(run_copy, "last.pt"), lone / "mine.pt")
    train_supervised.main(["--resume", str(lone / "mine.pt"), "--epochs", "3"])
    assert load_checkpoint(str(lone))["state"]["epoch"] == 3


@pytest.fixture
def three_epochs(tmp_path) -> str:
    """A deterministic tiny run of 3 epochs with an epoch_1.pt snapshot, and its best.pt from epoch 1 (as when
    the later epochs did not beat it; set here so that it does not hang on the validation numbers)."""
    train_supervised.main(train_args(tmp_path / "runs", "--epochs", "3", "--set", "snapshot_epochs=[1]",
                                     "--set", "deterministic=True"))
    run_dir = tmp_path / "runs" / "run"
    shutil.copy(run_dir / "epoch_1.pt", run_dir / "best.pt")
    return str(run_dir)


@pytest.mark.parametrize("older", ["epoch_1.pt", "best.pt"])
def test_resume_of_an_older_checkpoint_of_the_run_is_refused_naming_the_newest(three_epochs, capsys, older):
    before = fingerprint(three_epochs)
    resume = os.path.join(three_epochs, older)
    line = error_line(train_supervised, ["--resume", resume, "--epochs", "4"], capsys)
    assert line == (f"error: --resume {resume}: run directory {three_epochs} has trained further "
                    f"({three_epochs}/last.pt is at epoch 3 (iteration 6), this checkpoint at epoch 1 (iteration 2)); "
                    f"resuming from it would write over the later checkpoints and cut the log back: --resume "
                    f"{three_epochs} continues from the newest, --overwrite goes back to this one after moving the "
                    f"run as it is to {three_epochs}.old-<time>/")
    assert fingerprint(three_epochs) == before


def test_overwrite_rolls_back_to_an_older_checkpoint_after_moving_the_run_aside(three_epochs, capsys):
    """Nothing lost: the run as it was lies whole beside, and the rolled-back run keeps the log before its
    checkpoint, the checkpoint and best.pt, and retrains epochs 2-3 bit-exactly."""
    before = fingerprint(three_epochs)
    train_supervised.main(["--resume", os.path.join(three_epochs, "epoch_1.pt"), "--epochs", "3", "--overwrite"])
    out = capsys.readouterr().out
    (aside,) = [p for p in os.listdir(os.path.dirname(three_epochs)) if p.startswith("run.old-")]
    aside = os.path.join(os.path.dirname(three_epochs), aside)
    assert fingerprint(aside) == before
    assert (f"rolled back to epoch 1 (iteration 2): brought back best.pt, config.json, epoch_1.pt, log.jsonl from "
            f"{aside}; the later checkpoints and log records stay there") in out
    with open(os.path.join(three_epochs, "log.jsonl")) as f:
        assert [json.loads(line)["epoch"] for line in f] == [0, 1, 2]
    redone, original = load_checkpoint(three_epochs), load_checkpoint(os.path.join(aside, "last.pt"))
    assert redone["state"]["iteration"] == 6
    assert all(torch.equal(v, original["generator"][k]) for k, v in redone["generator"].items())


@pytest.mark.parametrize(("extra", "changed"), [
    (["--lr", "0.1"], "lr=0.1 (--lr; the run's: 0.00025)"),
    (["--optimizer_type", "Adam"], "optimizer='Adam' (--optimizer_type; the run's: 'RMSprop')"),
    (["--set", "lr_milestones=[3]", "--set", "weight_decay=0.5"],
     "weight_decay=0.5 (--set; the run's: 0.0); lr_milestones=(3,) (--set; the run's: (100,))"),
    (["--batch_size", "3"], "batch_size=3 (--batch_size; the run's: 4)"),
])
def test_resume_refuses_a_change_of_what_the_checkpoint_restores(run_copy, capsys, extra, changed):
    """The restored optimiser and schedule would ignore it (and a new batch would misplace the epoch position),
    while config.json and the checkpoints recorded it."""
    before = fingerprint(run_copy)
    line = error_line(train_supervised, ["--resume", run_copy, "--epochs", "2", *extra], capsys)
    assert line == (f"error: --resume {run_copy}: {changed} cannot change on resume: a resumed run keeps the "
                    f"batch, optimisers and lr schedule it started with (its epoch position counts batches of that "
                    f"size; the optimisers' state is restored from the checkpoint); drop the change, or start a new "
                    f"run from this one's weights (--model_name NAME --set pretrained={run_copy})")
    assert fingerprint(run_copy) == before


def test_resume_takes_the_same_lr_again_and_what_may_change(run_copy):
    """The same command with --resume (a stopped run's advice) repeats the run's lr; print_every may change."""
    train_supervised.main(["--resume", run_copy, "--epochs", "2", "--lr", "0.00025", "--print_every", "1"])
    with open(os.path.join(run_copy, "config.json")) as f:
        config = json.load(f)
    assert (config["lr"], config["print_every"]) == (0.00025, 1)
    assert load_checkpoint(run_copy)["state"]["epoch"] == 2


# ---- row 3: two trainings in one folder ---------------------------------------------------------------

HOLD = ("import sys, time\n"
        "from training.runlock import RunLock\n"
        "RunLock(sys.argv[1])\n"
        "print('held', flush=True)\n"
        "time.sleep(120)\n")


@pytest.mark.slow
def test_a_run_directory_belongs_to_one_training_and_a_killed_one_leaves_it_free(tmp_path, capsys):
    run_dir = tmp_path / "runs" / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], cwd=REPO, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        for extra in ([], ["--overwrite"]):  # --overwrite must not move a folder in use aside either
            line = error_line(train_supervised, train_args(tmp_path / "runs", *extra), capsys)
            assert line.startswith(f"error: run directory {run_dir} is in use by another training (pid "
                                   f"{holder.pid} on host "), line
        assert os.listdir(run_dir) == [".lock"] and os.listdir(tmp_path / "runs") == ["run"]
    finally:
        holder.kill()  # SIGKILL: no clean-up of its own, its lock file stays behind
        holder.wait()
    assert os.listdir(run_dir) == [".lock"]
    train_supervised.main(train_args(tmp_path / "runs"))  # the dead holder's lock is not held by anyone
    assert load_checkpoint(str(run_dir))["state"]["epoch"] == 1
    assert ".lock" not in os.listdir(run_dir)  # a run that ends removes its lock file


# ---- row 4: PCK threshold --------------------------------------------------------------------------------

@pytest.mark.parametrize("alpha", ["-1", "nan", "0", "1.5", "inf"])
def test_a_pck_threshold_outside_0_1_is_refused(tmp_path, capsys, alpha):
    line = error_line(test_entry, ["--predictions", "p.h5", "--alpha", alpha, "--output", str(tmp_path / "o")],
                      capsys)
    assert line.startswith("error: --alpha: ") and "expected a fraction of the reference length in (0, 1]" in line
    assert os.listdir(tmp_path) == []


# ---- row 5 and "1e12 px": predictions that are not positions ---------------------------------------------

def _predictions(path, preds: np.ndarray) -> str:
    with h5py.File(path, "w") as f:
        f["preds"] = preds
    return str(path)


def test_unusable_predictions_are_counted_and_named_or_stop_when_nothing_is_usable(tmp_path, capsys):
    joints = _joints(20)
    root = _lspet(tmp_path / "lspet", joints)
    perfect = joints[:, :2].transpose(2, 0, 1).copy()  # (N, 14, 2): every joint exact
    preds = perfect.copy()
    preds[3] = np.nan  # one whole row
    preds[7, 2] = [np.inf, 5.0]
    preds[9, 4] = [1e12, 1e12]  # finite, but no position in any photo
    args = ["--predictions", _predictions(tmp_path / "p.h5", preds), "--dataset", "lspet", "--path", root,
            "--split", "all", "--output", str(tmp_path / "out")]
    result = test_entry.main(args)
    out = capsys.readouterr().out
    assert "note: 16 of 280 scored joints (3 samples) have no usable prediction (NaN, infinite or beyond 100000 " \
           "px; first: sample 3 (im00004.jpg), r_ankle): scored as misses, as the official MPII and LSP " \
           "evaluations score a joint without a prediction" in out
    assert result["mean"] == pytest.approx(100 * (280 - 16) / 280)
    record = json.loads((tmp_path / "out" / "metrics.json").read_text())["unusable_predictions"]
    assert (record["joints"], record["samples"], record["first_sample"], record["scored_as"]) == (16, 3, 3, "misses")

    _predictions(tmp_path / "p.h5", np.full_like(perfect, np.nan))
    line = error_line(test_entry, [*args, "--overwrite"], capsys)
    assert line.startswith(f"error: --predictions {tmp_path / 'p.h5'}: no scored joint has a usable prediction: "
                           f"280 of 280 scored joints")


# ---- row 6: a checkpoint whose weights are NaN -------------------------------------------------------------

def test_a_checkpoint_with_nan_weights_stops_every_tool(tmp_path, capsys, tiny_run_dir):
    ckpt = load_checkpoint(str(tiny_run_dir / "last.pt"))
    name = next(k for k, v in ckpt["generator"].items() if v.is_floating_point())
    weight = ckpt["generator"][name]
    weight[(0,) * weight.dim()] = float("nan")
    bad = str(tmp_path / "nan.pt")
    torch.save(ckpt, bad)
    expected = f"{bad}: generator weight {name} holds NaN or infinite values"
    line = error_line(predict, ["--checkpoint", bad, "--image", _photo(tmp_path / "a.png"), "--output",
                                str(tmp_path / "p")], capsys)
    assert line.startswith(f"error: --checkpoint {expected}")
    line = error_line(test_entry, ["--checkpoint", bad, "--output", str(tmp_path / "t"), "--workers", "0"], capsys)
    assert line.startswith(f"error: --checkpoint {expected}")
    line = error_line(train_adversarial, train_args(tmp_path / "runs", "--pretrained", bad), capsys)
    assert line.startswith(f"error: --pretrained {expected}")
    line = error_line(train_supervised, ["--resume", bad, "--epochs", "2"], capsys)
    assert line.startswith(f"error: --resume {expected}")
    assert sorted(os.listdir(tmp_path)) == ["a.png", "nan.pt"]  # no output folder, no run folder


# ---- row 8: a start stopped before its first checkpoint --------------------------------------------------

def test_a_start_stopped_before_its_first_checkpoint_is_restarted_by_the_same_command(tmp_path, capsys,
                                                                                    monkeypatch):
    getitem = SyntheticDataset.__getitem__

    def undecodable(self, key):
        if self.split == "train":
            raise UserInputError("cannot decode image: synthetic (test)")
        return getitem(self, key)

    args = train_args(tmp_path / "runs")
    run_dir = tmp_path / "runs" / "run"
    with monkeypatch.context() as mp:
        mp.setattr(SyntheticDataset, "__getitem__", undecodable)
        assert error_line(train_supervised, args, capsys) == "error: cannot decode image: synthetic (test)"
    assert os.listdir(run_dir) == ["config.json"]
    line = error_line(train_supervised, ["--resume", str(run_dir)], capsys)
    assert line == (f"error: --resume {run_dir}: no checkpoint saved there yet (its run stopped before the first "
                    f"one); run the same command without --resume to start it again")
    train_supervised.main(args)
    assert f"note: {run_dir} holds no checkpoint (an earlier start stopped before its first one)" in \
        capsys.readouterr().out
    assert load_checkpoint(str(run_dir))["state"]["epoch"] == 1


def test_a_start_stopped_by_sigterm_while_reading_data_leaves_nothing_behind(tmp_path, capsys, monkeypatch):
    load = training.run.load_data

    def terminated(*a, **k):
        os.kill(os.getpid(), signal.SIGTERM)  # what a scheduler does; the handler raises at the next bytecode
        return load(*a, **k)

    with monkeypatch.context() as mp:
        mp.setattr(training.run, "load_data", terminated)
        assert error_line(train_supervised, train_args(tmp_path / "runs"), capsys, code=143) == \
            "error: stopped by SIGTERM"
    assert os.listdir(tmp_path) == []  # the run folder it made, and its lock, are gone
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    train_supervised.main(train_args(tmp_path / "runs"))


# ---- row 9: a half-written last.pt never hides a complete checkpoint ----------------------------------------

@pytest.mark.parametrize("last", ["missing", "cut short"])
def test_a_run_without_a_whole_last_pt_resumes_from_its_newest_complete_checkpoint(run_copy, tmp_path, capsys,
                                                                                 last):
    last_pt = os.path.join(run_copy, "last.pt")
    if last == "missing":  # SIGKILL while the first end-of-epoch last.pt was written: its temp file is left
        os.replace(last_pt, os.path.join(run_copy, ".tmp-0123456789ab.pt"))
    else:  # a last.pt damaged outside the trainer (an older version, a copy cut short)
        with open(last_pt, "r+b") as f:
            f.truncate(1000)
    why = "is missing (its write was cut short?)" if last == "missing" else "cannot be loaded"
    note = f"note: {last_pt} {why}; using {os.path.join(run_copy, 'best.pt')}, the newest complete checkpoint"
    test_entry.main(["--checkpoint", run_copy, "--output", str(tmp_path / "t"), "--workers", "0",
                     "--max_samples", "2", "--num_pictures", "0"])
    assert note in capsys.readouterr().out
    train_supervised.main(["--resume", run_copy, "--epochs", "2"])
    assert note in capsys.readouterr().out
    assert load_checkpoint(last_pt)["state"]["epoch"] == 2
    assert not [n for n in os.listdir(run_copy) if n.startswith(".tmp-")]


# ---- row 10 and row 14: image files, checked before any work --------------------------------------------------

@pytest.fixture
def lspet17(tmp_path) -> str:
    """LSPET layout, 17 photos: 16 train, 1 val (im00017)."""
    root = tmp_path / "lspet"
    _lspet(root, _joints(17))
    (root / "images").mkdir()
    for i in range(1, 18):
        _photo(root / "images" / f"im{i:05d}.jpg", (64, 64, 3), 10 * i)
    return str(root)


def test_a_missing_validation_image_is_found_before_training(tmp_path, capsys, lspet17):
    os.unlink(os.path.join(lspet17, "images", "im00017.jpg"))
    args = train_args(tmp_path / "runs", "--dataset", "lspet", "--path", lspet17, "--max_train_samples", "16")
    line = error_line(train_supervised, args, capsys)
    assert line == (f"error: image not found: {lspet17}/images/im00017.jpg; 1 of the 1 images of the 'val' split "
                    f"(--val_split) cannot be read, found before any work")
    assert not (tmp_path / "runs").exists()
    line = error_line(train_supervised, [*args, "--skip_bad_images"], capsys)  # validation needs every image
    assert "(--val_split)" in line and not (tmp_path / "runs").exists()


def test_a_path_that_is_not_an_image_file_says_what_it_is(tmp_path, capsys, lspet17, tiny_run_dir):
    images = os.path.join(lspet17, "images")
    for name in ("im00002.jpg", "im00003.jpg", "im00004.jpg"):
        os.unlink(os.path.join(images, name))
    os.mkdir(os.path.join(images, "im00002.jpg"))
    os.symlink("im00003.jpg", os.path.join(images, "im00003.jpg"))  # a symlink to itself
    os.mkfifo(os.path.join(images, "im00004.jpg"))  # opening it would wait for a writer forever
    args = train_args(tmp_path / "runs", "--dataset", "lspet", "--path", lspet17, "--max_train_samples", "16")
    line = error_line(train_supervised, args, capsys)
    assert line == (f"error: image {images}/im00002.jpg is a directory; expected an image file; 3 of the 16 images "
                    f"of the 'train' split (--train_split) cannot be read, found before any work; pass "
                    f"--skip_bad_images to train without them")
    for name, what in (("im00003.jpg", "a symlink loop"),
                       ("im00004.jpg", "not a regular file (a FIFO, socket or device)")):
        line = error_line(predict, ["--checkpoint", str(tiny_run_dir), "--image", os.path.join(images, name),
                                    "--output", str(tmp_path / "p")], capsys)
        assert line == (f"error: --image: {images}/{name} is {what}; expected an image file, a folder of images "
                        f"or a video")
    train_supervised.main([*args, "--skip_bad_images"])
    assert "note: 3 train images cannot be read; --skip_bad_images skips them" in capsys.readouterr().out


# ---- row 11, and the LSPET flag of 7 --------------------------------------------------------------------------

def test_an_annotation_file_without_samples_or_with_a_flag_other_than_0_or_1(tmp_path, capsys):
    score = ["--predictions", "p.h5", "--dataset", "lspet", "--split", "all", "--output", str(tmp_path / "o")]
    root = _lspet(tmp_path / "empty", np.zeros((14, 3, 0)))
    line = error_line(test_entry, [*score, "--path", root], capsys)
    assert line == (f"error: {root}/joints.mat: 'joints' has shape (14, 3, 0), expected 14x3xN with N >= 1 samples "
                    f"(LSPET layout)")
    joints = _joints(20)
    joints[5, 2, 3] = 7
    root = _lspet(tmp_path / "seven", joints)
    line = error_line(test_entry, [*score, "--path", root], capsys)
    assert line == (f"error: {root}/joints.mat: a label flag of sample 3, joint 5 is 7; expected 0 (not labelled) "
                    f"or 1 (labelled)")
    (tmp_path / "mpii" / "annot").mkdir(parents=True)
    with h5py.File(tmp_path / "mpii" / "annot" / "valid.h5", "w") as f:  # an MPII file with no rows
        for key, shape in {"center": (0, 2), "scale": (0,), "part": (0, 16, 2), "visible": (0, 16),
                           "normalize": (0,)}.items():
            f[key] = np.zeros(shape)
        f["imgname"] = np.array([], dtype="S10")
    line = error_line(test_entry, ["--predictions", "p.h5", "--dataset", "mpii", "--path", str(tmp_path / "mpii"),
                                   "--output", str(tmp_path / "o")], capsys)
    assert line.startswith("error: --split: the 'valid' split of mpii") and "holds no samples" in line


# ---- row 12 and row 15: which checkpoint, which flag, what is wrong --------------------------------------------

def test_a_cut_checkpoint_and_a_missing_one_name_the_flag_and_the_cause(tmp_path, capsys, tiny_run_dir):
    cut = tmp_path / "cut.pt"
    cut.write_bytes((tiny_run_dir / "last.pt").read_bytes()[:1000])  # truncate -s 1000
    cause = (f"cannot load checkpoint {cut}: the file is cut short or damaged (1000 bytes, its zip index is "
             f"missing); expected a complete file written by train_supervised.py, train_adversarial.py or "
             f"scripts/export.py")
    assert error_line(train_supervised, ["--resume", str(cut)], capsys) == f"error: --resume: {cause}"
    line = error_line(test_entry, ["--checkpoint", str(cut), "--output", str(tmp_path / "t")], capsys)
    assert line == f"error: --checkpoint: {cause}"
    missing = str(tmp_path / "missing.pt")
    for entry, args, flag in [(train_adversarial, train_args(tmp_path / "runs", "--pretrained", missing),
                               "--pretrained"), (train_supervised, ["--resume", missing], "--resume"),
                              (test_entry, ["--checkpoint", missing, "--output", str(tmp_path / "t")], "--checkpoint")]:
        assert error_line(entry, args, capsys) == f"error: {flag}: checkpoint not found: {missing}"
    assert sorted(os.listdir(tmp_path)) == ["cut.pt"]


# ---- row 13: --overwrite when the aside name of this second is taken ---------------------------------------------

def test_overwrite_picks_a_free_aside_name(run_copy, capsys, monkeypatch):
    import training.rundir

    fixed = types.SimpleNamespace(datetime=types.SimpleNamespace(
        now=lambda: __import__("datetime").datetime(2026, 1, 2, 3, 4, 5)))
    monkeypatch.setattr(training.rundir, "datetime", fixed)
    taken = f"{run_copy}.old-20260102-030405"
    os.makedirs(taken)
    (open(os.path.join(taken, "earlier.txt"), "w")).close()
    before = fingerprint(run_copy)
    train_supervised.main(train_args(os.path.dirname(run_copy), "--overwrite"))
    assert f"moved the old run aside: {taken}-2" in capsys.readouterr().out
    assert os.listdir(taken) == ["earlier.txt"] and fingerprint(f"{taken}-2") == before


@pytest.mark.parametrize("given", ["best.pt", "."])  # the file, or the run directory (its last.pt)
def test_overwrite_records_where_a_pretrained_file_it_moved_aside_is_now(run_copy, capsys, given):
    """--pretrained R/x/best.pt --model_name x --overwrite: G is read from the run that --overwrite moves aside,
    so config.json and the checkpoints name the file read, now in x.old-*, not x/best.pt (the new run's own)."""
    read = "best.pt" if given == "best.pt" else "last.pt"
    before = fingerprint(run_copy)
    pretrained = os.path.normpath(os.path.join(run_copy, given))
    train_adversarial.main(train_args(os.path.dirname(run_copy), "--model_name", "run", "--pretrained", pretrained,
                                      "--overwrite"))
    out = capsys.readouterr().out
    aside = next(p for p in os.listdir(os.path.dirname(run_copy)) if p.startswith("run.old-"))
    recorded = os.path.join(os.path.dirname(run_copy), aside, read)
    assert f"initialised G from {recorded}" in out
    assert fingerprint(recorded.rsplit(os.sep, 1)[0]) == before  # the file read is whole, where the record says
    with open(os.path.join(run_copy, "config.json")) as f:
        assert json.load(f)["pretrained"] == recorded
    for name in ("last.pt", "best.pt"):
        assert load_checkpoint(os.path.join(run_copy, name))["config"]["pretrained"] == recorded


def test_moved_within_follows_names_and_symlinks_into_the_folder(tmp_path):
    from training.rundir import moved_within

    run, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
    (run / "sub").mkdir(parents=True)
    elsewhere.mkdir()
    (run / "sub" / "best.pt").write_text("x")
    (elsewhere / "link.pt").symlink_to(run / "sub" / "best.pt")
    assert moved_within(str(run / "sub" / "best.pt"), str(run)) == os.path.join("sub", "best.pt")
    assert moved_within(str(elsewhere / "link.pt"), str(run)) == os.path.join("sub", "best.pt")
    assert moved_within(str(elsewhere / "link.pt"), str(elsewhere)) == "link.pt"  # the link itself moves
    assert moved_within(str(tmp_path / "run2" / "best.pt"), str(run)) is None  # a sibling whose name starts alike


# ---- row 17: an empty value ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("entry", "args", "flag"), [
    (train_supervised, ["--modelName", ""], "--model_name"),
    (train_supervised, ["--resume", ""], "--resume"),
    (train_supervised, ["--save_root", " "], "--save_root"),
    (train_adversarial, ["--pretrained", ""], "--pretrained"),
    (test_entry, ["--checkpoint", "", "--output", "o"], "--checkpoint"),
    (predict, ["--checkpoint", "c.pt", "--image", "", "--output", "o"], "--image"),
])
def test_an_empty_value_is_refused_not_taken_for_the_default(tmp_path, capsys, monkeypatch, entry, args, flag):
    monkeypatch.chdir(tmp_path)
    line = error_line(entry, args if entry in (test_entry, predict) else [*train_args("runs"), *args], capsys)
    assert line == f"error: {flag}: empty value (an unset shell variable?); give a value or leave the flag out"
    assert os.listdir(tmp_path) == []


# ---- smaller: the article of the method --------------------------------------------------------------------

def test_resume_of_another_methods_checkpoint_reads_well(tmp_path, capsys, tiny_run_dir):
    ckpt = load_checkpoint(str(tiny_run_dir / "last.pt"))
    ckpt["method"] = ckpt["config"]["method"] = "adversarial"
    torch.save(ckpt, tmp_path / "adv.pt")
    line = error_line(train_supervised, ["--resume", str(tmp_path / "adv.pt"), "--epochs", "2"], capsys)
    assert "checkpoint is from an adversarial run, not supervised" in line


def test_an_ignored_signal_stays_ignored():
    """nohup ignores SIGHUP so that closing the terminal does not end the run: the handlers keep that."""
    from utils.errors import signal_handlers

    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with signal_handlers(lambda *_: None):
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGUSR1) is not signal.SIG_DFL
        assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGHUP, previous)
