"""Heatmap codec: Gaussian targets from joint positions and joint positions back from heatmaps.

Coordinates are heatmap px (0-based, pixel centres at integers, x right, y down); see utils/geometry.py.
"""

from __future__ import annotations

import numpy as np
import torch


def draw_gaussians(joints: np.ndarray, mask: np.ndarray, size: int, sigma: float) -> np.ndarray:
    """Unnormalised Gaussians (peak 1 at the exact sub-pixel joint) for each joint, zero where masked.

    joints: (J, 2) heatmap px; mask: (J,) bool, joints to draw; returns (J, size, size) float32 in [0, 1].
    Each Gaussian is written only inside a (2r+1)^2 window, r = ceil(3 sigma), all joints at once.
    """
    joints = np.asarray(joints, dtype=np.float64)
    num = joints.shape[0]
    r = int(np.ceil(3 * sigma))
    canvas = np.zeros((num, size, size), dtype=np.float32)
    centre = np.floor(joints + 0.5).astype(np.int64)  # nearest pixel, (J, 2)
    inside = np.asarray(mask, dtype=bool) & np.all((centre >= -r) & (centre <= size - 1 + r), axis=1)
    if not inside.any():
        return canvas
    j = np.nonzero(inside)[0]
    win = centre[j, :, None] + np.arange(-r, r + 1)  # (K, 2, 2r+1): pixel columns (x) and rows (y) of each window
    g = np.exp(-((win - joints[j, :, None]) ** 2) / (2 * sigma**2))  # separable factors, (K, 2, 2r+1)
    patch = (g[:, 1, :, None] * g[:, 0, None, :]).astype(np.float32)  # (K, 2r+1, 2r+1)
    on_map = (win >= 0) & (win < size)
    keep = on_map[:, 1, :, None] & on_map[:, 0, None, :]  # window pixels that fall on the map
    flat = (j[:, None, None] * size + win[:, 1, :, None]) * size + win[:, 0, None, :]
    canvas.reshape(-1)[flat[keep]] = patch[keep]
    return canvas


def draw_gaussians_torch(joints: torch.Tensor, mask: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
    """``draw_gaussians`` for a batch, on the tensors' own device (the training step draws its targets there).

    joints: (B, J, 2) heatmap px; mask: (B, J), nonzero = draw; returns (B, J, size, size) float32. The same
    float64 arithmetic and the same (2r+1)^2 window around the nearest pixel, so it equals ``draw_gaussians``
    to within the last bit of float64's ``exp``, i.e. exactly or by one float32 ulp."""
    joints = joints.to(torch.float64)
    r = int(np.ceil(3 * sigma))
    grid = torch.arange(size, dtype=torch.float64, device=joints.device)  # pixel centres of a row or column
    centre = torch.floor(joints + 0.5)  # (B, J, 2)
    g = torch.exp(-((grid - joints[..., None]) ** 2) / (2 * sigma**2))  # (B, J, 2, size) separable factors
    g = torch.where((grid - centre[..., None]).abs() <= r, g, 0.0)  # outside the window: zero, as drawn
    maps = (g[:, :, 1, :, None] * g[:, :, 0, None, :]).to(torch.float32)  # (B, J, size, size): rows y, columns x
    return maps * (mask != 0).to(torch.float32)[..., None, None]


def decode_heatmaps(heatmaps: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Argmax of each map, moved a quarter pixel toward the higher neighbour in x and in y.

    heatmaps: (N, J, H, W). Returns coords (N, J, 2) in heatmap px (float64) and scores (N, J),
    the maximum value of each map.
    """
    coords, scores = decode_heatmaps_torch(torch.as_tensor(heatmaps))
    return coords.cpu().numpy(), scores.cpu().numpy()


def decode_heatmaps_torch(heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``decode_heatmaps`` on the tensor's own device, without a host sync: (N, J, 2) float64, (N, J)."""
    hm = heatmaps.detach().float()
    n, j, h, w = hm.shape
    flat = hm.reshape(n, j, h * w)
    scores, idx = flat.max(dim=-1)
    x = (idx % w).long()
    y = torch.div(idx, w, rounding_mode="floor").long()

    def at(yy: torch.Tensor, xx: torch.Tensor) -> torch.Tensor:
        return flat.gather(-1, (yy.clamp(0, h - 1) * w + xx.clamp(0, w - 1)).unsqueeze(-1)).squeeze(-1)

    # Neighbours outside the map count as equal, so a border peak gets no shift.
    dx = torch.where((x > 0) & (x < w - 1), at(y, x + 1) - at(y, x - 1), torch.zeros_like(scores))
    dy = torch.where((y > 0) & (y < h - 1), at(y + 1, x) - at(y - 1, x), torch.zeros_like(scores))
    coords = torch.stack([x + 0.25 * torch.sign(dx), y + 0.25 * torch.sign(dy)], -1).double()
    return coords, scores


def flip_back(heatmaps: torch.Tensor, flip_perm: list[int]) -> torch.Tensor:
    """Heatmaps predicted on a mirrored image, mapped back to the unmirrored frame. (N, J, H, W)."""
    return heatmaps.flip(-1)[:, flip_perm]
