"""The input pipeline for large photos: reduced JPEG decode, compact samples with targets drawn on the device,
prepared person-centred crops, worker counts, and the photo-pipeline benchmark."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from conftest import REPO
from torch.utils.data import default_collate

from config import load_config
from datasets import build_dataset
from datasets.base import decode_factor, decode_image, expand_batch, warp_crop
from datasets.photos import write_photo_set
from datasets.prepared import prepared_side
from inference.scoring import score_predictions
from scripts import prepare_crops
from training.data import default_workers, resolve_workers
from training.steps import StepContext, to_device
from utils.errors import UserInputError
from utils.geometry import apply_affine, crop_affine, decoded_affine, invert_affine
from utils.heatmaps import draw_gaussians, draw_gaussians_torch


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> str:
    """Six generated 1280x720 train photos and three valid ones, MPII layout."""
    root = str(tmp_path_factory.mktemp("photos"))
    write_photo_set(root, {"train": 6, "valid": 3})
    return root


@pytest.fixture(scope="module")
def prepared(photos, tmp_path_factory) -> str:
    """Both splits prepared for the default config (256 px, zoom 1.25, 30 degrees) by scripts/prepare_crops.py."""
    out = str(tmp_path_factory.mktemp("prepared") / "crops")
    prepare_crops.main(["--dataset", "mpii", "--path", photos, "--out", out, "--workers", "0"])
    return out


def smooth_jpeg(path: str, width: int = 1280, height: int = 720) -> str:
    """A photo-sized JPEG of smooth colour waves (periods of 17-41 px): resampling differences stay small, a
    half-pixel shift does not."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack([127 + 100 * np.sin(x / 23) * np.cos(y / 31), 127 + 100 * np.sin((x + y) / 41),
                      127 + 90 * np.cos(x / 17 - y / 29)], -1)
    cv2.imwrite(path, np.clip(image, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 95])
    return path


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_reduced_decode_crop_equals_the_full_decode_crop(tmp_path, factor):
    path = smooth_jpeg(str(tmp_path / "waves.jpg"))
    full, one = decode_image(path, 1)
    reduced, applied = decode_image(path, factor)
    assert one == 1 and applied == factor and reduced.shape[:2] == (720 // factor, 1280 // factor)
    for rotation, flip in ((0.0, False), (25.0, True), (-30.0, False)):
        # the crop spans 1.1 x factor x 256 px: just over one decoded pixel per crop pixel
        affine = crop_affine(np.array([640.3, 361.7]), 1.1 * factor * 256, 256, rotation, flip)
        want = warp_crop(full, affine, 256, bgr=True).astype(float)
        got = warp_crop(reduced, decoded_affine(affine, factor), 256, bgr=True).astype(float)
        assert np.abs(got - want).mean() < 0.8, (factor, rotation)
        naive = np.array(affine)  # scaled but not shifted by (factor - 1) / 2: off by that many original px
        naive[:, :2] *= factor
        assert np.abs(warp_crop(reduced, naive, 256, bgr=True) - want).mean() > 1.0


def test_decode_factor_keeps_a_decoded_pixel_per_crop_pixel():
    assert [decode_factor(span, 256) for span in (100, 511.9, 512, 1023, 1024, 2047, 2048, 9000)] == \
        [1, 1, 2, 2, 4, 4, 8, 8]
    for span in np.linspace(50, 5000, 200):
        factor = decode_factor(span, 256)
        assert factor == 1 or span / factor >= 256  # reduced only while a crop pixel keeps a decoded pixel
        assert factor == 8 or span / (2 * factor) < 256  # and as far as that allows


def test_a_non_jpeg_file_is_decoded_whole(tmp_path):
    path = str(tmp_path / "a.png")
    cv2.imwrite(path, np.full((64, 96, 3), 7, np.uint8))
    image, factor = decode_image(path, 4)
    assert factor == 1 and image.shape == (64, 96, 3)


def test_draw_gaussians_torch_equals_the_numpy_targets():
    rng = np.random.default_rng(0)
    joints = rng.uniform(-10, 74, (20, 16, 2))
    joints[0, :4] = [[3.5, 7.5], [-6.5, 10], [70.5, 63.5], [0.5, 0.5]]  # half-pixels: window edges
    mask = rng.random((20, 16)) < 0.8
    want = np.stack([draw_gaussians(j, m, 64, 2.0) for j, m in zip(joints, mask, strict=True)])
    got = draw_gaussians_torch(torch.from_numpy(joints), torch.from_numpy(mask), 64, 2.0).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    assert (want > 0).sum() > 1000


@pytest.mark.parametrize("name", ["synthetic", "mpii"])
def test_compact_samples_expand_to_the_full_samples(photos, name):
    """What the training step gets from a compact batch (expanded on the device) is what the workers used to
    send: the same float image and target maps."""
    cfg = load_config("tiny" if name == "synthetic" else "default_config", {"seed": 3})
    ds = build_dataset(name, photos if name == "mpii" else None, "train", cfg, train=True)
    keys = [(i, 2) for i in range(4)]
    full = default_collate([ds[k] for k in keys])
    compact = default_collate([ds.compact_sample(k) for k in keys])
    assert compact["image"].dtype == torch.uint8 and compact["image"].shape[-1] == 3
    ctx = StepContext(torch.device("cpu"), None, {}, 0.0, channels_last=True)
    got, want = to_device(compact, ctx), to_device(full, ctx)
    assert sorted(got) == sorted(want)
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=1e-6, atol=1e-7, msg=key)
    assert got["image"].is_contiguous(memory_format=torch.channels_last)
    assert expand_batch(compact, torch.device("cpu"))["occlusion"].sum() == full["occlusion"].sum()


def test_reduced_decode_applies_to_training_only(photos):
    cfg = load_config("default_config")
    assert build_dataset("mpii", photos, "train", cfg, train=True).reduced_decode
    assert not build_dataset("mpii", photos, "valid", cfg, train=False).reduced_decode
    off = cfg.with_overrides({"reduced_decode": False})
    assert not build_dataset("mpii", photos, "train", off, train=True).reduced_decode


def test_prepared_crops_hold_the_largest_zoom_and_rotation(photos, prepared):
    """At zoom 1.25 and +-30 degrees (flipped or not) every pixel of a 256 px training crop is read from inside
    the prepared 440 px crop, and the crop shows what the one warped from the photo itself shows."""
    assert prepared_side(256, 1.25, 30.0) == 440
    cfg = load_config("default_config")
    photo_set = build_dataset("mpii", photos, "train", cfg, train=True)
    crops = build_dataset("mpii_prepared", prepared, "train", cfg, train=True)
    side = crops.attrs["side"]
    for index in range(len(crops)):
        source = cv2.cvtColor(cv2.imread(photo_set.image_path(index)), cv2.COLOR_BGR2RGB)
        for rotation, flip in ((30.0, False), (-30.0, True), (30.0, True)):
            affine = crop_affine(crops.ann.centers[index], crops.ann.box_sizes[index] * 1.25, 256, rotation, flip)
            corners = apply_affine(invert_affine(affine), np.array([[0, 0], [255, 0], [0, 255], [255, 255.0]]))
            assert corners.min() >= 0 and corners.max() <= side - 2  # the bilinear neighbour stays inside too
            original = crop_affine(photo_set.ann.centers[index], photo_set.ann.box_sizes[index] * 1.25, 256,
                                   rotation, flip)
            # compared blurred: resampled once or twice, the photos' pixel noise differs, not the picture
            want = cv2.GaussianBlur(warp_crop(source, original, 256).astype(np.float32), (0, 0), 3)
            got = cv2.GaussianBlur(warp_crop(crops.load_image(index), affine, 256).astype(np.float32), (0, 0), 3)
            assert np.abs(got - want).mean() < 3
            for rows, cols in ((slice(0, 16), slice(0, 16)), (slice(-16, None), slice(-16, None))):
                assert np.abs(got[rows, cols] - want[rows, cols]).mean() < 10  # corners filled, not black


def test_prepared_annotations_score_like_the_photos(photos, prepared):
    """The crop frame is a similarity of the photo's: the same predictions score the same PCKh in both."""
    cfg = load_config("default_config")
    photo_set = build_dataset("mpii", photos, "valid", cfg, train=False)
    crops = build_dataset("mpii_prepared", prepared, "val", cfg, train=False)  # "val" finds the "valid" split
    rng = np.random.default_rng(0)
    preds = photo_set.ann.joints + rng.normal(0, 12, photo_set.ann.joints.shape)
    affines = np.stack([crop_affine(c, b * 440 / 256, 440) for c, b in
                        zip(photo_set.ann.centers, photo_set.ann.box_sizes, strict=True)])
    want = score_predictions(preds, photo_set)
    got = score_predictions(apply_affine(affines, preds), crops)
    assert got["mean"] == pytest.approx(want["mean"]) and 0 < want["mean"] < 100
    assert got["per_joint"] == pytest.approx(want["per_joint"], nan_ok=True)


def test_prepared_predictions_are_written_in_the_photos_file_frame(photos, prepared, tmp_path, capsys):
    """A predictions file from prepared crops holds photo px in the photos' file frame: the crops' own labels,
    taken there, are the photos' ``part`` (not crop px, nor 0-based px), and test.py scores that file on the
    photos."""
    import h5py

    import test as test_entry

    cfg = load_config("default_config")
    crops = build_dataset("mpii_prepared", prepared, "val", cfg, train=False)
    rows = np.arange(len(crops))
    in_file = crops.to_file_frame(crops.ann.joints, rows)
    with h5py.File(os.path.join(photos, "annot", "valid.h5")) as f:
        part = f["part"][()]
    ok = crops.ann.annotated
    assert np.abs(in_file[ok] - part[ok]).max() < 1e-6
    np.testing.assert_allclose(crops.from_file_frame(in_file, rows)[ok], crops.ann.joints[ok], atol=1e-9)
    with h5py.File(tmp_path / "p.h5", "w") as f:
        f["preds"] = in_file
    result = test_entry.main(["--predictions", str(tmp_path / "p.h5"), "--dataset", "mpii", "--path", photos,
                              "--split", "valid", "--output", str(tmp_path / "out")])
    assert result["mean"] == 100.0


def test_prepared_mpii_crops_without_a_file_frame_are_refused(prepared, tmp_path):
    """Crops prepared before MPII's MATLAB coordinates were read as such hold joints half a pixel off."""
    import shutil

    import h5py

    old = tmp_path / "old"
    shutil.copytree(prepared, old)
    with h5py.File(old / "train.h5", "a") as f:
        del f.attrs["file_origin"]
    with pytest.raises(UserInputError, match="prepare it again"):
        build_dataset("mpii_prepared", str(old), "train", load_config("default_config"), True)


def test_prepared_crops_refuse_a_config_that_asks_for_more(prepared):
    with pytest.raises(UserInputError, match=r"rotation=40.0 \(crops made for 30.0\)"):
        build_dataset("mpii_prepared", prepared, "train", load_config("default_config", {"rotation": 40.0}), True)
    with pytest.raises(UserInputError, match="read them with --dataset mpii_prepared"):
        build_dataset("lsp_prepared", prepared, "train", load_config("default_config"), True)
    with pytest.raises(UserInputError, match="no prepared split 'test'.*found: train, valid"):
        build_dataset("mpii_prepared", prepared, "test", load_config("default_config"), False)


def test_prepare_refuses_a_non_empty_out_without_overwrite(photos, tmp_path, capsys):
    prepare = prepare_crops.main
    out = tmp_path / "crops"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    args = ["--dataset", "mpii", "--path", photos, "--out", str(out), "--splits", "valid", "--workers", "0"]
    with pytest.raises(SystemExit) as stop:
        prepare(args)
    assert stop.value.code == 2 and "is not empty; pass --overwrite" in capsys.readouterr().err
    assert sorted(os.listdir(out)) == ["notes.txt"]
    prepare([*args, "--overwrite"])
    assert sorted(os.listdir(out)) == ["notes.txt", "valid.h5", "valid.npy"]
    assert (out / "notes.txt").read_text() == "mine"
    capsys.readouterr()
    prepare([*args, "--overwrite"])  # now the split's files are there: named before they are replaced
    assert f"replacing 2 earlier files (--overwrite): {out / 'valid.npy'}, {out / 'valid.h5'}" in \
        capsys.readouterr().out
    annot = os.path.join(photos, "annot")
    before = os.path.getmtime(os.path.join(annot, "valid.h5"))
    with pytest.raises(SystemExit):
        prepare(["--dataset", "mpii", "--path", photos, "--out", annot, "--splits", "valid", "--overwrite"])
    assert "would replace the input" in capsys.readouterr().err
    assert os.path.getmtime(os.path.join(annot, "valid.h5")) == before


def test_prepare_names_the_splits_flag_for_an_unknown_split(photos, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        prepare_crops.main(["--dataset", "mpii", "--path", photos, "--out", str(tmp_path / "crops"), "--splits",
                            "valid,foo", "--workers", "0"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.startswith("error: --splits: MPII has no split 'foo'"), err
    assert not (tmp_path / "crops").exists()


@pytest.mark.parametrize(("cores", "ranks", "cuda", "want"), [
    (16, 1, True, 8), (16, 8, True, 1), (16, 4, True, 3), (64, 8, True, 7), (4, 1, True, 3), (1, 1, True, 1),
    (2, 1, False, 0), (4, 2, False, 0), (8, 1, False, 1), (16, 1, False, 1),
])
def test_default_workers_follow_cores_and_gpus(cores, ranks, cuda, want):
    assert default_workers(cores, ranks, cuda) == want


def test_resolve_workers_reads_the_ranks_of_this_node(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: set(range(16)), raising=False)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert resolve_workers(-1, torch.device("cuda")) == 3 and resolve_workers(5, torch.device("cuda")) == 5
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    assert resolve_workers(-1, torch.device("cuda")) == 8 and resolve_workers(-1, torch.device("cpu")) == 1


@pytest.mark.slow
def test_photo_pipeline_benchmark_writes_every_figure(tmp_path):
    out = tmp_path / "pipeline.json"
    cmd = [sys.executable, "-m", "scripts.benchmark", "--photo_pipeline", "--photos", "4",
           "--pipeline_samples", "16", "--batch_size", "8", "--repeats", "1", "--photo_workers", "1",
           "--device", "cpu", "--json", str(out)]
    proc = subprocess.run(cmd, cwd=tmp_path, env={**os.environ, "PYTHONPATH": REPO}, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads(out.read_text())["photo_pipeline"]
    for path in ("baseline", "direct", "prepared"):
        assert r["single_process_samples_per_s"][path] > 0 and r["loader_samples_per_s_per_worker"][path]["1"] > 0
    assert set(r["speedup_per_worker"]) == {"direct", "prepared"} and r["device_expand_samples_per_s"] > 0
    assert r["loader_errors"] == {}
    assert r["photo_size"] == [1280, 720] and r["input_res"] == 256 and r["prepared_side"] == 440
    assert abs(sum(r["decode_factor_share"].values()) - 1) < 1e-9 and r["cpu_capability"]
    assert "prepared" in proc.stdout and "samples/s per worker" in proc.stdout


def test_the_train_loader_ships_compact_samples_to_a_gpu_only(photos):
    """On a GPU the step draws the targets; on the CPU the workers still do (cheaper there than torch's ops)."""
    from types import SimpleNamespace

    from runtime.distributed import DistInfo
    from training.data import CompactSamples, make_train_loader

    cfg = load_config("default_config", {"workers": 1})
    ds = build_dataset("mpii", photos, "train", cfg, train=True)
    spec = SimpleNamespace(max_train_samples=None, skip_bad_images=False)
    gpu, _ = make_train_loader(ds, cfg, DistInfo(), spec, torch.device("cuda"))
    cpu, _ = make_train_loader(ds, cfg, DistInfo(), spec, torch.device("cpu"))
    assert isinstance(gpu.dataset, CompactSamples) and gpu.pin_memory and gpu.persistent_workers
    assert cpu.dataset is ds and not cpu.pin_memory and cpu.persistent_workers
    off, _ = make_train_loader(ds, cfg.with_overrides({"device_targets": False}), DistInfo(), spec,
                               torch.device("cuda"))
    assert off.dataset is ds


CUDA = torch.device(os.environ.get("POSE_CUDA_TESTS_DEVICE", "cuda"))


@pytest.mark.cuda
@pytest.mark.skipif(CUDA.type == "cuda" and not torch.cuda.is_available(), reason="needs CUDA")
def test_compact_batch_expands_on_the_gpu_as_the_workers_draw(photos):
    """The GPU's own float ops (pinned, non-blocking copies) give the batch the CPU workers would have sent."""
    cfg = load_config("default_config")
    ds = build_dataset("mpii", photos, "train", cfg, train=True)
    keys = [(i, 4) for i in range(6)]
    compact = {k: v.pin_memory() if CUDA.type == "cuda" else v
               for k, v in default_collate([ds.compact_sample(k) for k in keys]).items()}
    want = default_collate([ds[k] for k in keys])
    got = to_device(compact, StepContext(CUDA, None, {}, 0.0, channels_last=True))
    assert got["image"].device.type == CUDA.type and got["image"].is_contiguous(memory_format=torch.channels_last)
    for key in ("image", "heatmaps", "occlusion", "joints", "annotated", "affine", "ref_length"):
        torch.testing.assert_close(got[key].cpu(), want[key], rtol=1e-6, atol=1e-6, msg=key)
