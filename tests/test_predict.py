"""predict.py on image files, its agreement with test.py, and the pictures (training curves, PCK curve)."""

from __future__ import annotations

import json
import os
import shutil

import cv2
import h5py
import numpy as np
import pytest
from conftest import error_line

import predict
import test as test_entry
from datasets import build_dataset
from datasets.skeleton import MPII
from inference.predict import Predictor, box_from_xywh
from scripts import plot_curves


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
    before = (tmp_path / "c.png").read_bytes()
    line = error_line(plot_curves, [str(run_dir), "--output", str(tmp_path / "c.png")], capsys)
    assert line.startswith(f"error: --output: 1 file would be replaced ({tmp_path / 'c.png'}); pass --overwrite")
    assert (tmp_path / "c.png").read_bytes() == before
    plot_curves.main([str(run_dir), "--output", str(tmp_path / "c.png"), "--overwrite"])
    assert f"replacing 1 earlier file (--overwrite): {tmp_path / 'c.png'}" in capsys.readouterr().out


# --- videos, per-image and per-frame boxes, unreadable files, bad boxes -------------------------------------------

def _write_video(path, frames: int = 5, size=(48, 40), fps: float = 12.5, fourcc: str = "mp4v") -> list[np.ndarray]:
    """A small video of random frames; returns the frames as written (BGR)."""
    rng = np.random.default_rng(1)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
    assert writer.isOpened()
    images = [rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8) for _ in range(frames)]
    for image in images:
        writer.write(image)
    writer.release()
    return images


def _decoded_frames(path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames
        frames.append(frame)


def _lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _fails(argv, capsys) -> str:
    """Run predict.py expecting a one-line error; returns the line."""
    with pytest.raises(SystemExit) as exc:
        predict.main(argv)
    stderr = capsys.readouterr().err
    err = stderr.rsplit("\r", 1)[-1]  # what a terminal shows: a video's progress bar clears itself
    assert exc.value.code == 2 and stderr.count("\n") == 1 and err.startswith("error: "), stderr
    return err


def test_video_gives_an_overlay_video_and_joints_per_frame(run_dir, tmp_path, capsys):
    video = tmp_path / "clip.mp4"
    _write_video(video)
    out = tmp_path / "out"
    (record,) = predict.main(["--checkpoint", str(run_dir), "--image", str(video), "--output", str(out),
                              "--device", "cpu"])
    assert record["frames"] == 5 and record["fps"] == 12.5 and (record["width"], record["height"]) == (48, 40)
    assert "5 frames, 12.5 fps" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["clip.jsonl", "clip.mp4"]  # no temporary files left

    overlay = cv2.VideoCapture(str(out / "clip.mp4"))
    assert overlay.get(cv2.CAP_PROP_FPS) == 12.5
    drawn = _decoded_frames(out / "clip.mp4")
    assert len(drawn) == 5 and drawn[0].shape == (40, 48, 3)

    lines = _lines(out / "clip.jsonl")
    assert [r["frame"] for r in lines] == list(range(5))
    assert [r["time_s"] for r in lines] == [i / 12.5 for i in range(5)]
    predictor = Predictor.from_checkpoint(str(run_dir), "cpu")
    for frame, line in zip(_decoded_frames(video), lines, strict=True):  # the frames as decoded, whole-frame box
        assert line["box_xywh"] == [0, 0, 48, 40]
        coords, scores = predictor.predict(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), *box_from_xywh(0, 0, 48, 40))
        np.testing.assert_allclose([[j["x"], j["y"]] for j in line["joints"]], coords, atol=1e-9)
        np.testing.assert_allclose([j["score"] for j in line["joints"]], scores, atol=1e-6)
        assert [j["name"] for j in line["joints"]] == list(MPII.names)

    # any file OpenCV opens as a video counts as one, whatever its extension
    shutil.copy(video, tmp_path / "clip.bin")
    (record,) = predict.main(["--checkpoint", str(run_dir), "--image", str(tmp_path / "clip.bin"), "--output",
                              str(tmp_path / "bin"), "--device", "cpu"])
    assert record["frames"] == 5 and _lines(tmp_path / "bin" / "clip.jsonl") == lines


def test_boxes_per_frame_and_per_image(run_dir, photos, tmp_path, capsys):
    video = tmp_path / "clip.mp4"
    _write_video(video, frames=3)
    per_frame = [[0, 0, 48, 40], [10, 5, 20, 30], [4.5, 2, 30, 30]]
    (tmp_path / "frames.json").write_text(json.dumps(per_frame))
    predict.main(["--checkpoint", str(run_dir), "--image", str(video), "--output", str(tmp_path / "v"),
                  "--bboxes", str(tmp_path / "frames.json")])
    assert [r["box_xywh"] for r in _lines(tmp_path / "v" / "clip.jsonl")] == per_frame

    (tmp_path / "short.json").write_text(json.dumps(per_frame[:2]))
    err = _fails(["--checkpoint", str(run_dir), "--image", str(video), "--output", str(tmp_path / "s"),
                  "--bboxes", str(tmp_path / "short.json")], capsys)
    assert "short.json: 2 boxes for the 3 frames video" in err  # before the first frame, not at frame 2
    assert list((tmp_path / "s").iterdir()) == []

    boxes = {"wide.png": [10, 5, 40, 50], "tall.png": [0, 0, 50, 80]}
    (tmp_path / "images.json").write_text(json.dumps(boxes))
    records = predict.main(["--checkpoint", str(run_dir), "--image", str(photos), "--output", str(tmp_path / "i"),
                            "--bboxes", str(tmp_path / "images.json")])
    assert {os.path.basename(r["image"]): r["box_xywh"] for r in records} == boxes
    (single,) = predict.main(["--checkpoint", str(run_dir), "--image", str(photos / "wide.png"), "--output",
                              str(tmp_path / "one"), "--bbox", "10", "5", "40", "50"])
    assert single["joints"] == next(r for r in records if r["image"].endswith("wide.png"))["joints"]

    (tmp_path / "partial.json").write_text(json.dumps({"wide.png": [10, 5, 40, 50]}))
    err = _fails(["--checkpoint", str(run_dir), "--image", str(photos), "--output", str(tmp_path / "p"),
                  "--bboxes", str(tmp_path / "partial.json")], capsys)
    assert "partial.json" in err and "no box for image 'tall.png'" in err
    err = _fails(["--checkpoint", str(run_dir), "--image", str(video), "--output", str(tmp_path / "p"),
                  "--bboxes", str(tmp_path / "images.json")], capsys)
    assert "a dict gives one box per image file" in err
    err = _fails(["--checkpoint", str(run_dir), "--image", str(photos), "--output", str(tmp_path / "p"),
                  "--bboxes", str(tmp_path / "frames.json")], capsys)
    assert "a list gives one box per video frame" in err
    (tmp_path / "bad.json").write_text("{not json")
    assert "bad.json: cannot read it as JSON" in _fails(["--checkpoint", str(run_dir), "--image", str(photos),
                                                         "--bboxes", str(tmp_path / "bad.json")], capsys)


def test_a_folder_with_an_unreadable_file(run_dir, photos, tmp_path, capsys):
    folder = tmp_path / "mixed"
    shutil.copytree(photos, folder)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a JPEG")
    out = tmp_path / "out"
    err = _fails(["--checkpoint", str(run_dir), "--image", str(folder), "--output", str(out)], capsys)
    assert "broken.jpg" in err

    records = predict.main(["--checkpoint", str(run_dir), "--image", str(folder), "--output", str(out),
                            "--skip_bad_images"])
    assert sorted(os.path.basename(r["image"]) for r in records) == ["tall.png", "wide.png"]
    assert "skipped 1 unreadable: broken.jpg" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["tall.json", "tall.png", "wide.json", "wide.png"]

    for name in ("tall.png", "wide.png"):
        (folder / name).write_bytes(b"")
    err = _fails(["--checkpoint", str(run_dir), "--image", str(folder), "--output", str(out), "--skip_bad_images",
                  "--overwrite"], capsys)
    assert "no image could be decoded" in err and "broken.jpg, tall.png, wide.png" in err


def test_a_cut_video(run_dir, tmp_path, capsys):
    """A video that stops decoding before its declared frame count: an error, or the frames before the cut."""
    whole = tmp_path / "whole.avi"
    _write_video(whole, frames=6, fourcc="MJPG")
    data = whole.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) * 2 // 3])
    decoded = len(_decoded_frames(cut))
    assert 0 < decoded < 6
    err = _fails(["--checkpoint", str(run_dir), "--image", str(cut), "--output", str(tmp_path / "a")], capsys)
    assert f"frame {decoded} of the 6" in err and "cut.avi" in err
    assert list((tmp_path / "a").iterdir()) == []
    (record,) = predict.main(["--checkpoint", str(run_dir), "--image", str(cut), "--output", str(tmp_path / "b"),
                              "--skip_bad_images"])
    assert record["frames"] == decoded and len(_lines(tmp_path / "b" / "cut.jsonl")) == decoded
    assert f"skipped 1 unreadable: cut.avi frames {decoded}-5" in capsys.readouterr().out


@pytest.mark.parametrize("box, message", [
    (["500", "500", "10", "10"], "does not overlap the 90x60 image"),
    (["-50", "0", "40", "60"], "does not overlap the 90x60 image"),
    (["nan", "0", "40", "60"], "must be 4 finite numbers"),
    (["0", "0", "inf", "60"], "must be 4 finite numbers"),
    (["1e12", "0", "40", "60"], "does not overlap the 90x60 image"),
    (["0", "0", "1e12", "1e12"], "more than 10x the 90x60 image's larger side"),
    (["0", "0", "0", "60"], "width and height must be positive"),
    (["0", "0", "40", "-1"], "width and height must be positive"),
])
def test_bad_boxes_are_one_line(run_dir, photos, tmp_path, capsys, box, message):
    out = tmp_path / "out"
    err = _fails(["--checkpoint", str(run_dir), "--image", str(photos / "wide.png"), "--output", str(out),
                  "--bbox", *box], capsys)
    assert err.startswith("error: --bbox") and message in err
    assert not out.exists() or list(out.iterdir()) == []
    # the same box from a --bboxes file (JSON allows NaN and Infinity as Python writes them)
    (tmp_path / "boxes.json").write_text(json.dumps({"wide.png": [float(v) for v in box]}))
    err = _fails(["--checkpoint", str(run_dir), "--image", str(photos / "wide.png"), "--output", str(out),
                  "--bboxes", str(tmp_path / "boxes.json")], capsys)
    assert "boxes.json: 'wide.png'" in err and message in err
    assert not out.exists() or list(out.iterdir()) == []


def test_a_failed_write_names_the_file(run_dir, photos, tmp_path, capsys):
    out = tmp_path / "out"
    (out / "wide.json").mkdir(parents=True)  # the JSON cannot replace a folder
    err = _fails(["--checkpoint", str(run_dir), "--image", str(photos / "wide.png"), "--output", str(out),
                  "--overwrite"], capsys)
    assert f"cannot write {out / 'wide.json'}" in err
    assert sorted(p.name for p in out.iterdir()) == ["wide.json"]  # no temporary file left
