"""Every bad-input path of the data layer ends in one line naming the file or flag, exit code 2."""

import h5py
import numpy as np
import pytest
import scipy.io

import test as test_entry
from datasets.lsp import LSPETDataset
from utils.errors import UserInputError

PIPE = {"input_res": 64, "output_res": 16, "sigma": 1.0, "mean": (0.5,) * 3, "std": (0.25,) * 3, "augmentation": None}


def run_test_py(args, capsys):
    with pytest.raises(SystemExit) as exc:
        test_entry.main(args)
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and err.startswith("error: ") and "\n" not in err
    return err


def test_missing_dataset_directory(tmp_path, capsys):
    err = run_test_py(["--predictions", "x.h5", "--dataset", "lsp", "--path", str(tmp_path / "nope"),
                       "--output", str(tmp_path / "o")], capsys)
    assert "nope" in err and "not found" in err


def test_missing_joints_mat_and_h5(tmp_path, capsys):
    err = run_test_py(["--predictions", "x.h5", "--dataset", "lspet", "--path", str(tmp_path),
                       "--split", "val", "--output", str(tmp_path / "o")], capsys)
    assert "joints.mat" in err
    err = run_test_py(["--predictions", "x.h5", "--dataset", "mpii", "--path", str(tmp_path),
                       "--split", "valid", "--output", str(tmp_path / "o")], capsys)
    assert "valid.h5" in err


def test_wrong_array_shape(tmp_path, capsys):
    scipy.io.savemat(tmp_path / "joints.mat", {"joints": np.zeros((3, 14, 20))})  # LSP layout given to LSPET
    err = run_test_py(["--predictions", "x.h5", "--dataset", "lspet", "--path", str(tmp_path),
                       "--split", "val", "--output", str(tmp_path / "o")], capsys)
    assert "joints.mat" in err and "14x3xN" in err
    (tmp_path / "annot").mkdir()
    with h5py.File(tmp_path / "annot" / "valid.h5", "w") as f:
        f["center"] = np.zeros((4, 2))
        f["scale"] = np.ones(4)
        f["part"] = np.zeros((4, 14, 2))
        f["visible"] = np.zeros((4, 16))
        f["normalize"] = np.ones(4)
        f["imgname"] = [b"a.jpg"] * 4
    err = run_test_py(["--predictions", "x.h5", "--dataset", "mpii", "--path", str(tmp_path),
                       "--split", "valid", "--output", str(tmp_path / "o")], capsys)
    assert "valid.h5" in err and "'part'" in err


def test_undecodable_and_missing_image(tmp_path):
    joints = np.ones((14, 3, 20))
    scipy.io.savemat(tmp_path / "joints.mat", {"joints": joints})
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "im00019.jpg").write_bytes(b"not a jpeg")
    ds = LSPETDataset(str(tmp_path), "val", box_margin=1.3, **PIPE)
    with pytest.raises(UserInputError, match="cannot decode image: .*im00019.jpg"):
        ds[0]
    with pytest.raises(UserInputError, match="image not found: .*im00020.jpg"):
        ds[1]


def test_predictions_with_wrong_shape_or_count(mpii_root, tmp_path, capsys):
    for shape in [(2957, 16, 2), (2958, 14, 2)]:
        path = tmp_path / f"p{shape[0]}_{shape[1]}.h5"
        with h5py.File(path, "w") as f:
            f["preds"] = np.zeros(shape)
        err = run_test_py(["--predictions", str(path), "--dataset", "mpii", "--path", mpii_root,
                           "--split", "valid", "--output", str(tmp_path / "o")], capsys)
        assert str(path) in err and "(2958, 16, 2)" in err
    path = tmp_path / "nopreds.h5"
    with h5py.File(path, "w") as f:
        f["other"] = np.zeros(3)
    assert "'preds'" in run_test_py(["--predictions", str(path), "--dataset", "mpii", "--path", mpii_root,
                                     "--output", str(tmp_path / "o")], capsys)


def test_unknown_dataset_and_split(tmp_path, capsys):
    assert "valid: mpii, lsp, lspet, synthetic" in run_test_py(
        ["--predictions", "x.h5", "--dataset", "coco", "--output", str(tmp_path)], capsys)
    scipy.io.savemat(tmp_path / "joints.mat", {"joints": np.zeros((3, 14, 20))})
    err = run_test_py(["--predictions", "x.h5", "--dataset", "lsp", "--path", str(tmp_path), "--split", "val",
                       "--output", str(tmp_path / "o")], capsys)
    assert "--split" in err and "valid: train, test, all" in err


def test_predictions_mode_scores_and_writes_metrics(mpii_root, tmp_path, capsys):
    with h5py.File(f"{mpii_root}/annot/valid.h5") as f:
        parts = f["part"][()]
    with h5py.File(tmp_path / "gt.h5", "w") as f:
        f["preds"] = parts
    result = test_entry.main(["--predictions", str(tmp_path / "gt.h5"), "--dataset", "mpii", "--path", mpii_root,
                              "--split", "valid", "--output", str(tmp_path / "out")])
    import json

    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved["metric"] == "PCKh@0.5" and saved["mean"] == 100.0 and saved["dataset"] == "mpii"
    assert saved["count"] == result["count"] and set(saved["per_joint"]) == {
        "Head", "Shoulder", "Elbow", "Wrist", "Hip", "Knee", "Ankle"}
