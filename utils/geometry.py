"""Affine maps between the original image, the network input crop and the heatmap grid.

Frames (all 0-based, pixel centres at integer coordinates, x right, y down):
- original: pixels of the image file, the frame of the annotation files;
- input: the ``input_res`` x ``input_res`` crop fed to the network;
- heatmap: the ``output_res`` x ``output_res`` grid of the targets and predictions.
A square crop of side ``box_size`` original px centred at ``center`` covers the crop edge to edge,
so x_out = (x - cx) * res / box_size + res / 2 - 0.5 before rotation and flip.
"""

from __future__ import annotations

import numpy as np
import torch


def crop_affine(
    center: np.ndarray, box_size: float, out_res: int, rotation_deg: float = 0.0, flip: bool = False
) -> np.ndarray:
    """2x3 matrix mapping original px to a rotated, optionally mirrored ``out_res`` crop.

    ``rotation_deg`` turns the person counter-clockwise in the crop (OpenCV's convention);
    ``flip`` mirrors the crop horizontally after the rotation.
    """
    s = out_res / float(box_size)
    a = np.deg2rad(rotation_deg)
    cos, sin = np.cos(a) * s, np.sin(a) * s
    half = out_res / 2.0 - 0.5
    cx, cy = float(center[0]), float(center[1])
    m = np.array(
        [[cos, sin, half - cos * cx - sin * cy], [-sin, cos, half + sin * cx - cos * cy]], dtype=np.float64
    )
    if flip:
        m[0] = -m[0]
        m[0, 2] += out_res - 1
    return m


def invert_affine(m: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 affine matrix (or a batch ``(..., 2, 3)``)."""
    m = np.asarray(m, dtype=np.float64)
    lin = m[..., :2]
    inv_lin = np.linalg.inv(lin)
    inv_t = -np.einsum("...ij,...j->...i", inv_lin, m[..., 2])
    return np.concatenate([inv_lin, inv_t[..., None]], axis=-1)


def apply_affine(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map points ``(..., J, 2)`` with a 2x3 matrix, or with a batch ``(N, 2, 3)`` when points are ``(N, J, 2)``."""
    m = np.asarray(m, dtype=np.float64)
    points = np.asarray(points, dtype=np.float64)
    if m.ndim == 3:
        return np.einsum("nij,nkj->nki", m[:, :, :2], points) + m[:, None, :, 2]
    return points @ m[:, :2].T + m[:, 2]


def heatmap_stride(input_res: int, output_res: int) -> float:
    """Input-crop px per heatmap px: a length in input px divided by it is the length in heatmap px."""
    return input_res / output_res


def input_to_heatmap(points: np.ndarray | torch.Tensor, input_res: int, output_res: int) -> np.ndarray | torch.Tensor:
    """Input-crop px -> heatmap px, keeping pixel centres aligned (not a plain division). ``points`` (..., 2): a
    torch tensor stays one (its dtype and device: the training step's targets), anything else becomes a float64
    NumPy array."""
    if not isinstance(points, torch.Tensor):
        points = np.asarray(points, dtype=np.float64)
    return (points + 0.5) / heatmap_stride(input_res, output_res) - 0.5


def heatmap_to_input(points: np.ndarray, input_res: int, output_res: int) -> np.ndarray:
    """Heatmap px -> input-crop px; the inverse of ``input_to_heatmap``."""
    return (np.asarray(points, dtype=np.float64) + 0.5) * heatmap_stride(input_res, output_res) - 0.5


def flip_joints(joints: np.ndarray, width: int, flip_perm: list[int] | np.ndarray) -> np.ndarray:
    """Mirror joints ``(..., J, 2)`` in a frame of ``width`` px and swap left/right indices."""
    out = np.array(joints, dtype=np.float64, copy=True)
    out[..., 0] = width - 1 - out[..., 0]
    return out[..., list(flip_perm), :]


def decoded_affine(m: np.ndarray, factor: int) -> np.ndarray:
    """``m`` (original px -> crop px) for the image decoded at 1/``factor`` of its size (JPEG scaled decoding).

    Decoded pixel i averages original pixels factor*i .. factor*i + factor - 1, so its centre lies at
    original x = factor * i + (factor - 1) / 2; the crop is the same, read from fewer pixels."""
    out = np.array(m, dtype=np.float64, copy=True)
    out[:, 2] += out[:, :2] @ np.full(2, (factor - 1) / 2.0)
    out[:, :2] *= factor
    return out


def rotated_extent(rotation_deg: float) -> float:
    """Side of the axis-aligned square that holds a unit square turned by any angle up to ``rotation_deg``:
    max over |a| <= rotation of |cos a| + |sin a| (sqrt 2 from 45 degrees on)."""
    a = np.deg2rad(min(abs(rotation_deg), 45.0))
    return float(np.cos(a) + np.sin(a))
