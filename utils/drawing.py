"""Drawing a skeleton onto an image array (pure: no files)."""

from __future__ import annotations

import cv2
import numpy as np

RED, YELLOW = (0, 0, 255), (0, 230, 255)  # BGR: ground truth red, prediction yellow


def draw_pose(image_bgr: np.ndarray, joints: np.ndarray, limbs, color: tuple[int, int, int],
              mask: np.ndarray | None = None, radius: int = 3) -> np.ndarray:
    """Draw skeleton lines and joint dots in place; joints (J, 2) in the image's px, mask (J,) of joints to draw."""
    mask = np.ones(len(joints), bool) if mask is None else mask
    pts = [(int(round(x)), int(round(y))) for x, y in joints]
    for a, b in limbs:
        if mask[a] and mask[b]:
            cv2.line(image_bgr, pts[a], pts[b], color, max(1, radius // 2), cv2.LINE_AA)
    for p, m in zip(pts, mask, strict=True):
        if m:
            cv2.circle(image_bgr, p, radius, color, -1, cv2.LINE_AA)
    return image_bgr
