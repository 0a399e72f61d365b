"""Loaders on the real shared files, and the sample pipeline's geometry."""

import numpy as np
import pytest
import torch

from datasets.base import Augmentation
from datasets.lsp import LSPDataset, LSPETDataset
from datasets.mpii import MPIIDataset
from datasets.sampler import EpochSampler
from utils.geometry import apply_affine, heatmap_to_input, invert_affine
from utils.heatmaps import decode_heatmaps

PIPE = {"input_res": 128, "output_res": 32, "sigma": 1.0, "mean": (0.5,) * 3, "std": (0.25,) * 3}
AUG = Augmentation(rotation=30.0, scale_min=0.75, scale_max=1.25, flip=True, color_jitter=0.2)


def test_lsp_joint_order_flags_and_splits(lsp_root):
    train = LSPDataset(lsp_root, "train", box_margin=1.3, augmentation=None, **PIPE)
    test = LSPDataset(lsp_root, "test", box_margin=1.3, augmentation=None, **PIPE)
    full = LSPDataset(lsp_root, "all", box_margin=1.3, augmentation=None, **PIPE)
    assert (len(train), len(test), len(full)) == (1000, 1000, 2000)
    assert train.ann.image_names[0] == "im0001.jpg" and test.ann.image_names[0] == "im1001.jpg"
    ann = full.ann
    assert ann.annotated.all()
    assert ann.visible.sum() == 2000 * 14 - 2044  # flag 0 = visible: 2044 joints carry flag 1
    # head top above neck above the hips in almost every (upright) person
    assert np.mean(ann.joints[:, 13, 1] < ann.joints[:, 12, 1]) > 0.9
    assert np.mean(ann.joints[:, 12, 1] < ann.joints[:, [2, 3], 1].mean(1)) > 0.9


def test_lspet_flags_splits_and_images(lspet_root):
    train = LSPETDataset(lspet_root, "train", box_margin=1.3, augmentation=None, **PIPE)
    val = LSPETDataset(lspet_root, "val", box_margin=1.3, augmentation=None, **PIPE)
    assert (len(train), len(val)) == (1800, 200)
    assert val.ann.image_names[0] == "im01801.jpg"
    both = np.concatenate([train.ann.annotated, val.ann.annotated])
    assert both.sum() == 24622  # flag 1 = annotated
    assert (train.ann.visible == train.ann.annotated).all()  # LSPET has no occlusion labels
    # many LSPET athletes are upside down, so check order without orientation: the neck sits
    # nearer the shoulder midpoint than the head top does
    j, a = train.ann.joints, train.ann.annotated
    ok = a[:, [8, 9, 12, 13]].all(1)
    mid = j[ok][:, [8, 9]].mean(1)
    assert np.mean(np.linalg.norm(j[ok, 12] - mid, axis=1) < np.linalg.norm(j[ok, 13] - mid, axis=1)) > 0.9
    img = val.load_image(0)
    assert img.shape == (128, 128, 3) and img.dtype == np.uint8


def test_mpii_box_follows_the_hourglass_convention(mpii_root):
    """The h5 files already hold Newell's adjustment (centre y + 15 s, scale x 1.25 of the official s):
    every centre_y - 12 scale is the official whole-pixel objpos, so the loader must not apply it again."""
    import h5py

    ds = MPIIDataset(mpii_root, "valid", augmentation=None, **PIPE)
    with h5py.File(f"{mpii_root}/annot/valid.h5") as f:
        c, s = f["center"][()], f["scale"][()]
    assert len(ds) == 2958
    objpos_y = c[:, 1] - 12 * s
    np.testing.assert_allclose(objpos_y, np.round(objpos_y), atol=1e-9)  # the adjustment is in the file
    np.testing.assert_allclose(ds.ann.centers, c - 1)  # MATLAB px -> 0-based
    np.testing.assert_allclose(ds.ann.box_sizes, 200 * s)


def test_mpii_joints_are_read_without_bias_from_truncated_matlab_pixels():
    """MPII's h5 files hold each joint as MATLAB px (1-based) truncated to a whole pixel: read back, random
    0-based positions come out with no mean offset (reading the numbers as 0-based px would put them half a
    pixel right and down, and flipping would turn that offset around), and a missing joint stays (0, 0)."""
    from datasets.mpii import joints_from_file, joints_to_file

    rng = np.random.default_rng(0)
    joints = rng.uniform(0, 1000, (20000, 16, 2))
    annotated = rng.random((20000, 16)) > 0.1
    stored = joints_to_file(joints, annotated)
    assert np.all(stored == np.round(stored)) and np.all(stored[~annotated] == 0) and stored[annotated].min() >= 1
    back = joints_from_file(stored, annotated)
    error = back[annotated] - joints[annotated]
    assert np.abs(error).max() <= 0.5 and np.abs(error.mean(axis=0)).max() < 0.01
    assert np.all(back[~annotated] == 0)


@pytest.mark.parametrize("seed", range(3))
def test_sample_targets_map_back_to_original_pixels(lspet_root, seed):
    """Decode the target heatmaps, undo the crop affine: we land on the annotation (< 1 original px)."""
    ds = LSPETDataset(lspet_root, "train", box_margin=1.3, augmentation=AUG, seed=seed, **PIPE)
    for i in range(0, 1800, 300):
        s = ds[(i, seed)]
        coords, _ = decode_heatmaps(s["heatmaps"][None])
        orig = apply_affine(invert_affine(s["affine"].numpy()), heatmap_to_input(coords[0], 128, 32))
        perm = ds.spec.flip_permutation()
        flipped = s["affine"][0, 0] < 0
        gt = ds.ann.joints[i][perm] if flipped else ds.ann.joints[i]
        inside = (s["annotated"].numpy() > 0) & np.all((s["joints"].numpy() > 8) & (s["joints"].numpy() < 120), 1)
        err = np.linalg.norm(orig - gt, axis=1)[inside]
        # decode error <= 0.25 heatmap px per axis (0.354 px), x 4 input px, x (box x zoom / 128) original px
        assert err.max() < 0.36 * 4 * ds.ann.box_sizes[i] * 1.25 / 128


def test_augmentation_is_deterministic_per_epoch_and_varies_across_epochs(lspet_root):
    ds = LSPETDataset(lspet_root, "train", box_margin=1.3, augmentation=AUG, seed=3, **PIPE)
    a, b, c = ds[(5, 0)], ds[(5, 0)], ds[(5, 1)]
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["heatmaps"], b["heatmaps"])
    assert not torch.equal(a["image"], c["image"])


def test_unannotated_joints_get_zero_maps(lspet_root):
    ds = LSPETDataset(lspet_root, "train", box_margin=1.3, augmentation=None, **PIPE)
    i = int(np.nonzero(~ds.ann.annotated.all(1))[0][0])
    s = ds[i]
    missing = s["annotated"] == 0
    assert missing.any() and s["heatmaps"][missing].abs().max() == 0 and s["occlusion"].abs().max() == 0


def test_epoch_sampler_shards_cover_the_epoch_once():
    shards = [list(EpochSampler(10, True, seed=1, rank=r, world_size=3)) for r in range(3)]
    assert all(len(s) == 4 for s in shards)
    seen = {i for s in shards for i, _ in s}
    assert seen == set(range(10))
    single = EpochSampler(10, True, seed=1)
    single.set_epoch(2, start=3)
    assert len(single) == 7 and all(e == 2 for _, e in single)
