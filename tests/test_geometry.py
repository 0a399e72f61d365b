"""Crop/inverse round trips, flips and heatmap-frame conversions."""

import cv2
import numpy as np
import pytest
import torch

from datasets.skeleton import LSP, MPII
from utils.geometry import (
    apply_affine,
    crop_affine,
    flip_joints,
    heatmap_stride,
    heatmap_to_input,
    input_to_heatmap,
    invert_affine,
)


@pytest.mark.parametrize("seed", range(20))
def test_crop_then_inverse_round_trip(seed):
    rng = np.random.default_rng(seed)
    m = crop_affine(rng.uniform(0, 800, 2), rng.uniform(50, 900), int(rng.choice([64, 128, 256])),
                    rng.uniform(-180, 180), bool(rng.random() < 0.5))
    pts = rng.uniform(-100, 1000, (16, 2))
    back = apply_affine(invert_affine(m), apply_affine(m, pts))
    assert np.abs(back - pts).max() < 0.1


def test_box_maps_edge_to_edge_and_centre_to_centre():
    m = crop_affine(np.array([100.0, 50.0]), 40.0, 64)
    # box [80, 120] x [30, 70] edges (pixel edges at -0.5 and 63.5 in the crop)
    np.testing.assert_allclose(apply_affine(m, np.array([[100.0, 50.0], [80.0, 30.0], [120.0, 70.0]])),
                               [[31.5, 31.5], [-0.5, -0.5], [63.5, 63.5]])


def test_rotation_matches_opencv_warp():
    """A bright dot moved by our matrix lands where cv2.warpAffine puts it."""
    img = np.zeros((200, 200), np.float32)
    img[120, 60] = 1.0
    m = crop_affine(np.array([100.0, 100.0]), 200.0, 200, rotation_deg=30.0)
    warped = cv2.warpAffine(img, m, (200, 200), flags=cv2.INTER_LINEAR)
    y, x = np.unravel_index(np.argmax(warped), warped.shape)
    expected = apply_affine(m, np.array([[60.0, 120.0]]))[0]
    assert abs(x - expected[0]) <= 1 and abs(y - expected[1]) <= 1


def test_flip_in_affine_equals_flip_of_points():
    c, s, res = np.array([40.0, 60.0]), 90.0, 64
    pts = np.random.default_rng(0).uniform(0, 100, (16, 2))
    plain = apply_affine(crop_affine(c, s, res, 10.0), pts)
    flipped = apply_affine(crop_affine(c, s, res, 10.0, flip=True), pts)
    np.testing.assert_allclose(flipped[:, 0], res - 1 - plain[:, 0])
    np.testing.assert_allclose(flipped[:, 1], plain[:, 1])


@pytest.mark.parametrize("spec", [MPII, LSP])
def test_flip_twice_is_identity_and_swaps_left_right(spec):
    pts = np.random.default_rng(1).uniform(0, 63, (spec.num_joints, 2))
    perm = spec.flip_permutation()
    once = flip_joints(pts, 64, perm)
    np.testing.assert_allclose(flip_joints(once, 64, perm), pts)
    for left, right in spec.flip_pairs:
        assert spec.names[left].split("_", 1)[1] == spec.names[right].split("_", 1)[1]
        np.testing.assert_allclose(once[left], [63 - pts[right, 0], pts[right, 1]])
    centre = [j for j in range(spec.num_joints) if all(j not in p for p in spec.flip_pairs)]
    np.testing.assert_allclose(once[centre, 0], 63 - pts[centre, 0])


def test_heatmap_frame_round_trip_keeps_pixel_centres():
    pts = np.array([[0.0, 255.0], [1.5, 3.5]])
    np.testing.assert_allclose(heatmap_to_input(input_to_heatmap(pts, 256, 64), 256, 64), pts)
    # the centre of the input crop is the centre of the heatmap
    np.testing.assert_allclose(input_to_heatmap(np.array([127.5, 127.5]), 256, 64), [31.5, 31.5])


def test_the_training_steps_tensors_go_through_the_same_conversion():
    """The fake targets of Algorithm 1 put joints (a float64 tensor on the device) into heatmap px with the
    NumPy pipeline's own function: the same numbers, still a tensor."""
    pts = np.array([[[0.0, 255.0], [1.5, 3.5], [127.5, 127.5]]])
    got = input_to_heatmap(torch.from_numpy(pts), 256, 64)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float64
    np.testing.assert_array_equal(got.numpy(), input_to_heatmap(pts, 256, 64))
    assert heatmap_stride(256, 64) == 4.0
