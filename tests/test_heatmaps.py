"""Gaussian targets and their decoding."""

import numpy as np
import torch

from datasets.skeleton import MPII
from utils.heatmaps import decode_heatmaps, draw_gaussians, flip_back


def test_decode_recovers_subpixel_peaks_within_a_quarter_pixel():
    rng = np.random.default_rng(0)
    joints = rng.uniform(2, 61, (200, 2))
    hm = draw_gaussians(joints, np.ones(200, bool), 64, 2.0)
    coords, scores = decode_heatmaps(hm[None])
    assert np.abs(coords[0] - joints).max() <= 0.25 + 1e-9
    assert scores.min() > 0.8


def test_gaussians_are_in_unit_range_and_masked_joints_are_zero():
    joints = np.array([[10.2, 20.7], [30.0, 30.0], [-50.0, 10.0], [63.0, 0.0]])
    hm = draw_gaussians(joints, np.array([True, False, True, True]), 64, 2.0)
    assert hm.shape == (4, 64, 64) and hm.dtype == np.float32
    assert 0.0 <= hm.min() and hm.max() <= 1.0
    assert hm[1].max() == 0.0  # masked
    assert hm[2].max() == 0.0  # far outside the map
    assert hm[3, 0, 63] == 1.0  # integer peak on the corner


def test_window_matches_full_gaussian_inside_three_sigma():
    joint = np.array([[20.3, 40.6]])
    hm = draw_gaussians(joint, np.array([True]), 64, 2.0)[0]
    yy, xx = np.mgrid[:64, :64]
    full = np.exp(-((xx - 20.3) ** 2 + (yy - 40.6) ** 2) / 8.0)
    near = (np.abs(xx - 20) <= 6) & (np.abs(yy - 41) <= 6)
    np.testing.assert_allclose(hm[near], full[near], atol=1e-6)
    assert hm[~near].max() == 0.0


def test_flip_back_undoes_a_mirrored_prediction():
    rng = np.random.default_rng(2)
    joints = rng.uniform(0, 63, (16, 2))
    hm = torch.from_numpy(draw_gaussians(joints, np.ones(16, bool), 64, 2.0))[None]
    perm = MPII.flip_permutation()
    mirrored = hm.flip(-1)[:, perm]  # what a perfect model predicts on the mirrored image
    torch.testing.assert_close(flip_back(mirrored, perm), hm)
