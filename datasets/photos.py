"""Generated full-size photos in the MPII layout: the input-pipeline benchmark's data, made without a download.

Each photo is a ``width`` x ``height`` JPEG (default 1280 x 720, the size of most MPII frames) with one
procedurally drawn person (``datasets.synthetic``) pasted on a textured background. Person boxes follow the
real MPII validation split (``annot/valid.h5``, 2958 people): box side 200 x ``scale`` px has a median of
689 px and quartiles of 475 and 1012 px, a log-normal with sigma 0.38 in log space. The folder holds
``images/`` and ``annot/{split}.h5`` as ``datasets.mpii.MPIIDataset`` reads them, so the benchmark times
the real MPII code path.

Frames: photo px, 0-based, pixel centres at integer coordinates (as in utils/geometry.py).
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from datasets.mpii import MATLAB_ORIGIN, joints_to_file
from datasets.mpii_official import write_h5
from datasets.synthetic import head_box_sizes, render_scene, sample_scene
from storage.io import atomic_output

BOX_MEDIAN = 689.0  # px: median person-box side of MPII's validation people
BOX_LOG_SIGMA = 0.38  # log-space spread: quartiles 475 and 1012 px as in MPII's validation people
BOX_RANGE = (160.0, 1400.0)  # px: clipped so that a drawn canvas stays under ~1800 px
MPII_BOX_FACTOR = 1.25  # box side = 1.25 x the person's extent (Newell's scale x 1.25 in MPII's files)
FIGURE_SHARE = 0.69  # box side / canvas side of a synthetic scene, on average
PHOTO_SIZE = (1280, 720)  # width, height: most MPII frames
JPEG_QUALITY = 90  # ~270 KB per photo, decoded by libjpeg-turbo about as fast as an MPII frame


def background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """(height, width, 3) uint8 texture: smooth colour fields at three scales, ellipses and sensor noise,
    so that a JPEG of it costs about as much to decode as a photo (~200 KB at quality 90, 1280 x 720)."""
    img = np.full((height, width, 3), 120.0, np.float32)
    for cells, amplitude in ((8, 60.0), (32, 30.0), (128, 15.0)):
        coarse = rng.normal(0, 1, (max(2, height * cells // width), cells, 3)).astype(np.float32)
        img += amplitude * cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    for _ in range(40):
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        axes = (int(rng.integers(5, 120)), int(rng.integers(5, 120)))
        color = tuple(float(c) for c in rng.integers(0, 256, 3))
        cv2.ellipse(img, centre, axes, float(rng.uniform(0, 180)), 0, 360, color, -1)
    img += rng.normal(0, 4, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def render_photo(rng: np.random.Generator, width: int, height: int) -> dict:
    """One photo and its person: ``image`` (H, W, 3) uint8 RGB; ``joints`` (16, 2) photo px, MPII order,
    (0, 0) where outside the photo; ``visible`` (16,) 0/1; ``center`` (2,) photo px and ``box``
    (person-box side) as MPII's files define them; ``head`` the PCKh reference (0.6 x head-box diagonal), photo px."""
    target = float(np.clip(BOX_MEDIAN * np.exp(rng.normal(0, BOX_LOG_SIGMA)), *BOX_RANGE))
    canvas = int(round(target / FIGURE_SHARE))
    scene = sample_scene(rng, canvas)
    drawn = render_scene(scene, canvas)
    lo, hi = scene.joints.min(0), scene.joints.max(0)
    place = np.array([rng.uniform(0.25, 0.75) * width, rng.uniform(0.3, 0.7) * height])
    shift = np.round(place - (lo + hi) / 2).astype(int)  # canvas px -> photo px
    image = background(rng, width, height)
    x0, y0 = max(shift[0], 0), max(shift[1], 0)
    x1, y1 = min(shift[0] + canvas, width), min(shift[1] + canvas, height)
    image[y0:y1, x0:x1] = drawn[y0 - shift[1]:y1 - shift[1], x0 - shift[0]:x1 - shift[0]]
    joints = scene.joints + shift
    inside = np.all((joints >= 0) & (joints <= (width - 1, height - 1)), axis=1)
    head_w, head_h = head_box_sizes(scene.head)
    return {"image": image, "joints": np.where(inside[:, None], joints, 0.0),
            "visible": (inside & ~scene.occluded).astype(np.float64),
            "center": (lo + hi) / 2 + shift, "box": MPII_BOX_FACTOR * float(np.max(hi - lo)),
            "head": 0.6 * float(np.hypot(head_w, head_h))}


def write_photo_set(root: str, splits: dict[str, int], seed: int = 0, size: tuple[int, int] = PHOTO_SIZE,
                    quality: int = JPEG_QUALITY) -> dict:
    """Write ``splits`` (name -> photo count) under ``root`` as ``images/<split>_<i>.jpg`` and
    ``annot/<split>.h5``; photo ``i`` of split number ``s`` is drawn from ``default_rng((seed, s, i))``.

    Returns ``{"bytes": total JPEG bytes, "box_sides": every person-box side (px)}``."""
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    os.makedirs(os.path.join(root, "annot"), exist_ok=True)
    total, sides = 0, []
    for s, (split, count) in enumerate(splits.items()):
        rows = {k: [] for k in ("imgname", "center", "scale", "part", "visible", "normalize")}
        for i in range(count):
            photo = render_photo(np.random.default_rng((seed, s, i)), *size)
            name = f"{split}_{i:05d}.jpg"
            ok, data = cv2.imencode(".jpg", cv2.cvtColor(photo["image"], cv2.COLOR_RGB2BGR),
                                    [cv2.IMWRITE_JPEG_QUALITY, quality])
            with atomic_output(os.path.join(root, "images", name)) as tmp, open(tmp, "wb") as f:
                f.write(data.tobytes())
            total += data.size
            sides.append(photo["box"])
            inside = np.any(photo["joints"] != 0, axis=1)
            for key, value in (("imgname", name.encode()), ("center", photo["center"] + MATLAB_ORIGIN),
                               ("scale", photo["box"] / 200.0), ("part", joints_to_file(photo["joints"], inside)),
                               ("visible", photo["visible"]), ("normalize", photo["head"])):
                rows[key].append(value)
        arrays = {k: np.array(v) if k == "imgname" else np.asarray(v, np.float64) for k, v in rows.items()}
        arrays["index"] = arrays["person"] = np.arange(count, dtype=np.float64)
        write_h5(os.path.join(root, "annot", f"{split}.h5"), arrays)
    return {"bytes": total, "box_sides": sides}
