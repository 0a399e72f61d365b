"""test.py --split test on MPII: predictions without a metric, and the submission file pred_keypoints_mpii.mat."""

from __future__ import annotations

import cv2
import h5py
import numpy as np
import pytest
import scipy.io
import torch
from test_prepare_mpii import rect, save_release

import test as test_entry
from config import load_config
from datasets.mpii import H5_ORIGIN, MATLAB_ORIGIN
from datasets.skeleton import MPII
from models import build_generator
from scripts import prepare_mpii
from training.build import generator_args

JOINT = [(0, 30.0, 40.0, 1)]  # one labelled joint: enough for a train/valid person
# Image 0 and 1: training images (the validation person, one train person). Image 2: test, people 1 and 3 single,
# 2 not. Image 3: test, person 2 single, person 1 not (and without a scale). Image 4: test, nobody single.
# Test people (0-based): (2, 0), (2, 2), (3, 1): three people over two images.
IMAGES = [
    ("train0.jpg", 1, [rect((0, 0, 10, 10), (40, 40), 0.3, JOINT)], []),
    ("train1.jpg", 1, [rect((0, 0, 10, 10), (40, 40), 0.3, JOINT)], [1]),
    ("t1.jpg", 0, [rect(objpos=(30, 40), scale=0.25), rect(objpos=(60, 40), scale=0.2),
                   rect(objpos=(90, 50), scale=0.3)], [1, 3]),
    ("t2.jpg", 0, [rect(objpos=(20, 20)), rect(objpos=(50, 35), scale=0.35)], [2]),
    ("t3.jpg", 0, [rect(objpos=(10, 10), scale=0.2)], []),
]
TEST_PEOPLE = [(2, 0), (2, 2), (3, 1)]
TO_MATLAB = MATLAB_ORIGIN - H5_ORIGIN  # predictions.h5 (the h5 files' frame) -> the submission's frame


@pytest.fixture(scope="module")
def mpii(tmp_path_factory):
    """(root with annot/ and images/, the official .mat): the hand-built release through scripts/prepare_mpii.py."""
    root = tmp_path_factory.mktemp("mpii")
    mat = save_release(root / "release.mat", IMAGES)
    valid_from = root / "valid_from.h5"
    with h5py.File(valid_from, "w") as f:
        f["index"], f["person"], f["imgname"] = [0.0], [0.0], [b"train0.jpg"]
    prepare_mpii.main(["--mat", mat, "--out", str(root / "annot"), "--valid_from", str(valid_from)])
    (root / "images").mkdir()
    rng = np.random.default_rng(0)
    for name, *_ in IMAGES:
        cv2.imwrite(str(root / "images" / name), rng.integers(0, 255, (80, 120, 3), dtype=np.uint8))
    return root, mat


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """An untrained config.tiny G saved with the keys test.py reads (weights do not matter here)."""
    cfg = load_config("tiny")
    torch.manual_seed(0)
    args = generator_args(cfg, MPII.num_joints)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    torch.save({"generator": build_generator(args).state_dict(), "model_args": args, "config": cfg.to_dict(),
                "dataset": "mpii"}, path)
    return path


def _run(mpii, checkpoint, out, *extra):
    root, _ = mpii
    return test_entry.main(["--checkpoint", str(checkpoint), "--dataset", "mpii", "--path", str(root), "--split",
                            "test", "--output", str(out), "--device", "cpu", "--workers", "0", "--batch_size", "2",
                            "--num_pictures", "1", *extra])


def _points(rect_struct) -> np.ndarray:
    """(16, 2) x, y of a loaded annorect entry, after checking the ids are 0..15 in order."""
    points = np.atleast_1d(rect_struct.annopoints.point)
    assert [int(p.id) for p in points] == list(range(16))
    return np.array([[p.x, p.y] for p in points])


def test_test_split_writes_predictions_and_the_submission_without_a_metric(mpii, checkpoint, tmp_path, capsys):
    out = tmp_path / "out"
    _run(mpii, checkpoint, out)
    printed = capsys.readouterr().out
    assert "no metric: split 'test' of mpii has no joint labels" in printed
    assert not (out / "metrics.json").exists() and not (out / "pck_curve.png").exists()
    with h5py.File(out / "predictions.h5") as f:
        preds = f["preds"][()]
    assert preds.shape == (3, 16, 2) and np.isfinite(preds).all()
    with h5py.File(mpii[0] / "annot" / "test.h5") as f:
        assert list(zip(f["index"][()], f["person"][()], strict=True)) == TEST_PEOPLE

    pred = scipy.io.loadmat(out / "pred_keypoints_mpii.mat", struct_as_record=False, squeeze_me=True)["pred"]
    assert [p.image.name for p in pred] == ["t1.jpg", "t2.jpg"]  # the images of test.h5, official order
    first, second = np.atleast_1d(pred[0].annorect), np.atleast_1d(pred[1].annorect)
    assert len(first) == 2 and len(second) == 1  # one entry per test person
    preds = preds + TO_MATLAB  # predictions.h5 is in the h5 files' frame, the submission in MATLAB's
    np.testing.assert_array_equal(_points(first[0]), preds[0])
    np.testing.assert_array_equal(_points(first[1]), preds[1])
    np.testing.assert_array_equal(_points(second[0]), preds[2])
    assert [p.name for p in (out / "pictures").iterdir()] == ["00000_t1.png"]


def test_submission_in_the_official_layout_with_the_release(mpii, checkpoint, tmp_path, capsys):
    """--mpii_mat: every test image, every person at its official position, objpos/scale copied, joints filled."""
    out = tmp_path / "out"
    _run(mpii, checkpoint, out, "--mpii_mat", mpii[1], "--max_samples", "2")  # a partial run: (2, 0), (2, 2)
    assert "submission:" in capsys.readouterr().out
    with h5py.File(out / "predictions.h5") as f:
        preds = f["preds"][()]
    pred = scipy.io.loadmat(out / "pred_keypoints_mpii.mat", struct_as_record=False, squeeze_me=True)["pred"]
    assert [p.image.name for p in pred] == ["t1.jpg", "t2.jpg", "t3.jpg"]  # every test image of the release
    rects = [np.atleast_1d(p.annorect) for p in pred]
    assert [len(r) for r in rects] == [3, 2, 1]
    assert [(r.objpos.x, r.objpos.y) for r in rects[0]] == [(30, 40), (60, 40), (90, 50)]
    assert [r.scale for r in rects[0]] == [0.25, 0.2, 0.3]
    assert isinstance(rects[1][0].scale, np.ndarray) and rects[1][0].scale.size == 0  # absent in the release
    preds = preds + TO_MATLAB
    np.testing.assert_array_equal(_points(rects[0][0]), preds[0])
    np.testing.assert_array_equal(_points(rects[0][2]), preds[1])
    empty = [rects[0][1], rects[1][0], rects[1][1], rects[2][0]]  # not predicted (not single, or past --max_samples)
    assert all(isinstance(r.annopoints, np.ndarray) and r.annopoints.size == 0 for r in empty)


def test_submission_flags_are_checked(mpii, checkpoint, tmp_path, capsys):
    root, _ = mpii
    with pytest.raises(SystemExit) as exc:
        _run(mpii, checkpoint, tmp_path / "a", "--mpii_mat", str(tmp_path / "none.mat"))
    assert exc.value.code == 2 and capsys.readouterr().err.startswith("error: --mpii_mat: file not found")
    other = tmp_path / "other.mat"
    save_release(other, [(n, t, r, s) for n, t, r, s in IMAGES[:2]] + [("x.jpg", 0, IMAGES[2][2], [1])])
    with pytest.raises(SystemExit) as exc:
        _run(mpii, checkpoint, tmp_path / "b", "--mpii_mat", str(other))
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and "other.mat" in err and "'x.jpg'" in err
    assert not (tmp_path / "b" / "pred_keypoints_mpii.mat").exists()
    with pytest.raises(SystemExit) as exc:
        test_entry.main(["--checkpoint", str(checkpoint), "--dataset", "mpii", "--path", str(root), "--split",
                         "valid", "--output", str(tmp_path / "c"), "--mpii_mat", mpii[1]])
    assert exc.value.code == 2 and "only for --dataset mpii --split test" in capsys.readouterr().err


def test_predictions_file_on_the_test_split_becomes_a_submission(mpii, tmp_path, capsys):
    root, _ = mpii
    preds = np.arange(3 * 16 * 2, dtype=np.float64).reshape(3, 16, 2)
    with h5py.File(tmp_path / "p.h5", "w") as f:
        f["preds"] = preds
    test_entry.main(["--predictions", str(tmp_path / "p.h5"), "--dataset", "mpii", "--path", str(root), "--split",
                     "test", "--output", str(tmp_path / "out")])
    assert "no metric" in capsys.readouterr().out
    pred = scipy.io.loadmat(tmp_path / "out" / "pred_keypoints_mpii.mat", struct_as_record=False,
                            squeeze_me=True)["pred"]
    np.testing.assert_array_equal(_points(np.atleast_1d(pred[1].annorect)[0]), preds[2] + TO_MATLAB)
