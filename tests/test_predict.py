"""predict.py on image files, its agreement with test.py, and the pictures (training curves, PCK curve)."""

from __future__ import annotations

import json

import cv2
import h5py
import numpy as np
import pytest

import plot_curves
import predict
import test as test_entry
import train_supervised
from datasets import build_dataset
from datasets.skeleton import MPII
from inference.predictor import Predictor, box_from_xywh


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A finished one-epoch tiny supervised run on the synthetic data."""
    root = tmp_path_factory.mktemp("runs")
    train_supervised.main(["--config", "config.tiny", "--device", "cpu", "--save_root", str(root), "--modelName",
                           "run", "--max_train_samples", "8", "--max_val_samples", "4"])
    return root / "run"


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    cv2.imwrite(str(folder / "wide.png"), rng.integers(0, 255, (60, 90, 3), dtype=np.uint8))
    cv2.imwrite(str(folder / "tall.png"), rng.integers(0, 255, (80, 50, 3), dtype=np.uint8))
    return folder


def _check_json(path, image, width, height):
    record = json.loads(path.read_text())
    assert record["image"] == str(image) and (record["width"], record["height"]) == (width, height)
    assert [j["name"] for j in record["joints"]] == list(MPII.names)
    for j in record["joints"]:
        assert set(j) == {"name", "x", "y", "score"} and all(np.isfinite([j["x"], j["y"], j["score"]]))
    return record


def test_predict_a_directory_and_a_file_with_a_box(run_dir, photos, tmp_path, capsys):
    out = tmp_path / "out"
    records = predict.main(["--checkpoint", str(run_dir / "best.pt"), "--image", str(photos), "--output", str(out),
                            "--device", "cpu"])
    assert len(records) == 2
    for name, (w, h) in {"wide": (90, 60), "tall": (50, 80)}.items():
        record = _check_json(out / f"{name}.json", photos / f"{name}.png", w, h)
        assert record["box_xywh"] == [0, 0, w, h]  # no box: the whole image
        picture = cv2.imread(str(out / f"{name}.png"))
        assert picture is not None and picture.shape == (h, w, 3)
    assert "wide.json" in capsys.readouterr().out

    records = predict.main(["--checkpoint", str(run_dir), "--image", str(photos / "wide.png"), "--output",
                            str(out / "box"), "--bbox", "10", "5", "40", "50", "--no_flip"])
    record = _check_json(out / "box" / "wide.json", photos / "wide.png", 90, 60)
    assert record["box_xywh"] == [10, 5, 40, 50] and (out / "box" / "wide.png").stat().st_size > 0


def test_whole_image_box_is_the_centred_square():
    center, side = box_from_xywh(0, 0, 90, 60)
    np.testing.assert_allclose(center, [44.5, 29.5])
    assert side == 90


def test_prediction_matches_test_py_on_the_same_box(run_dir, tmp_path):
    """Synthetic validation images with their person boxes: predict.py's path gives test.py's coordinates."""
    out = tmp_path / "test"
    test_entry.main(["--checkpoint", str(run_dir / "best.pt"), "--dataset", "synthetic", "--output", str(out),
                     "--max_samples", "3", "--batch_size", "1", "--workers", "0", "--device", "cpu"])
    with h5py.File(out / "predictions.h5") as f:
        expected = f["preds"][()]
    assert (out / "pck_curve.png").stat().st_size > 0 and cv2.imread(str(out / "pck_curve.png")) is not None

    predictor = Predictor.from_checkpoint(str(run_dir / "best.pt"), "cpu")
    dataset = build_dataset("synthetic", None, "val", predictor.cfg, train=False)
    for i in range(3):
        coords, scores = predictor.predict(dataset.load_image(i), dataset.ann.centers[i], dataset.ann.box_sizes[i])
        np.testing.assert_allclose(coords, expected[i], atol=1e-3)
        assert scores.shape == (16,)

    # the same through the command line: the image as a PNG file and the person box as --bbox
    cv2.imwrite(str(tmp_path / "val0.png"), cv2.cvtColor(dataset.load_image(0), cv2.COLOR_RGB2BGR))
    (cx, cy), side = dataset.ann.centers[0], dataset.ann.box_sizes[0]
    bbox = [float(v) for v in (cx - side / 2 + 0.5, cy - side / 2 + 0.5, side, side)]
    predict.main(["--checkpoint", str(run_dir / "best.pt"), "--image", str(tmp_path / "val0.png"), "--output",
                  str(tmp_path / "p"), "--bbox", *map(repr, bbox)])
    joints = json.loads((tmp_path / "p" / "val0.json").read_text())["joints"]
    np.testing.assert_allclose([[j["x"], j["y"]] for j in joints], expected[0], atol=1e-3)


def test_amp_flag_overrides_the_checkpoint_precision(run_dir, tmp_path):
    """--amp bf16 on a fp32 checkpoint reaches the forward pass of test.py and predict.py alike."""
    def test_py(amp):
        out = tmp_path / amp
        test_entry.main(["--checkpoint", str(run_dir / "best.pt"), "--dataset", "synthetic", "--output", str(out),
                         "--max_samples", "3", "--batch_size", "1", "--workers", "0", "--device", "cpu",
                         "--amp", amp, "--num_pictures", "0"])
        with h5py.File(out / "predictions.h5") as f:
            return f["preds"][()], f["scores"][()]

    (_, fp32_scores), (bf16, bf16_scores) = test_py("off"), test_py("bf16")
    assert not np.array_equal(fp32_scores, bf16_scores)  # the flag changed the arithmetic
    np.testing.assert_allclose(bf16_scores, fp32_scores, atol=0.05)

    predictor = Predictor.from_checkpoint(str(run_dir / "best.pt"), "cpu", amp="bf16")
    assert predictor.cfg["amp"] == "bf16"
    dataset = build_dataset("synthetic", None, "val", predictor.cfg, train=False)
    coords, _ = predictor.predict(dataset.load_image(0), dataset.ann.centers[0], dataset.ann.box_sizes[0])
    np.testing.assert_allclose(coords, bf16[0], atol=1e-3)


def test_training_curves_at_the_end_and_on_demand(run_dir, tmp_path, capsys):
    assert (run_dir / "curves.png").stat().st_size > 0
    path = plot_curves.main([str(run_dir), "--output", str(tmp_path / "c.png")])
    assert path == str(tmp_path / "c.png") and cv2.imread(path) is not None
    (run_dir / "curves.png").unlink()
    assert plot_curves.main([str(run_dir)]) == str(run_dir / "curves.png")
    assert (run_dir / "curves.png").stat().st_size > 0
    with pytest.raises(SystemExit) as exc:
        plot_curves.main([str(tmp_path)])
    assert exc.value.code == 2 and capsys.readouterr().err.startswith("error: no training log")
