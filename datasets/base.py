"""The sample pipeline shared by every dataset: one decode, one affine warp, targets, tensors.

A dataset subclass supplies ``Annotations`` (joints in original-image px plus the person box) and
``load_image`` (or ``image_path``); ``PoseDataset.__getitem__`` turns index ``i`` into the sample dict below.

Sample keys (J joints, R = input_res, r = output_res):
    image (3, R, R) float32 normalised RGB | heatmaps, occlusion (J, r, r) float32 in [0, 1]
    joints (J, 2) input-crop px | visible, annotated (J,) float32 0/1
    affine (2, 3) float64, original px -> input-crop px | index int | ref_length float (metric reference, original px)

``compact_sample`` is the same sample as the training loader ships it, a quarter of the bytes: ``image``
(R, R, 3) uint8 RGB with ``pixel_scale``/``pixel_offset`` (3,) float32 (normalised = pixel * scale + offset),
``heatmap_joints`` (J, 2) float64 heatmap px, ``heatmap_size`` and ``sigma`` instead of the two target maps;
``expand_batch`` turns a batch of them into the sample above on the training device.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from datasets.skeleton import JointSpec
from storage.io import NOT_FOUND, file_problem
from utils.errors import UserInputError
from utils.geometry import apply_affine, crop_affine, decoded_affine, input_to_heatmap
from utils.heatmaps import draw_gaussians, draw_gaussians_torch


@dataclass
class Annotations:
    """Ground truth of one split, all in original-image px."""

    joints: np.ndarray  # (N, J, 2)
    annotated: np.ndarray  # (N, J) bool: the joint has a label
    visible: np.ndarray  # (N, J) bool: labelled and not occluded (subset of annotated)
    centers: np.ndarray  # (N, 2) person-box centre
    box_sizes: np.ndarray  # (N,) person-box side
    ref_lengths: np.ndarray  # (N,) metric reference length (head size or torso); NaN = sample not scored
    image_names: list[str]  # (N,) file name (or a label for generated images)
    labelled: bool = True  # False for a split published without joints (MPII test): predict only, no metric

    def __len__(self) -> int:
        return len(self.joints)


@dataclass(frozen=True)
class Augmentation:
    """Random train-time transform ranges (the paper's: +-30 deg, 0.75-1.25 scale, flips)."""

    rotation: float  # max |rotation| in degrees
    scale_min: float  # person-box zoom range; > 1 shows more context
    scale_max: float
    flip: bool  # mirror half the samples
    color_jitter: float  # max relative change of each channel's gain


_JPEG_START, _JPEG_END = b"\xff\xd8\xff", b"\xff\xd9"  # SOI (+ the next marker's 0xff), EOI
_PADDING = b"\x00 \t\r\n"  # some writers pad a JPEG after its EOI marker


def jpeg_state(path: str) -> str | None:
    """"whole" or "truncated" for a JPEG file, None for any other file.

    A truncated JPEG (its end marker missing: a download or copy cut short) is decoded by OpenCV without
    error, the missing part grey, and libjpeg's warning ("Premature end of JPEG file") names no file;
    reading 3 + 64 bytes finds it instead."""
    with open(path, "rb") as f:
        if f.read(3) != _JPEG_START:
            return None
        f.seek(0, os.SEEK_END)
        f.seek(max(f.tell() - 64, 3))
        return "whole" if f.read().rstrip(_PADDING).endswith(_JPEG_END) else "truncated"


def image_problem(path: str) -> str | None:
    """The one-line error of an image file that cannot be read as a regular file (missing, a directory, a
    broken or looping symlink, a FIFO or device, no permission), or None; nothing is opened or decoded."""
    problem = file_problem(path)
    if problem is None:
        return None
    if problem == NOT_FOUND:
        return f"image not found: {path}"
    return f"image {path} is {problem}; expected an image file"


# cv2.imread flags of libjpeg's scaled decoding: the IDCT itself outputs 1/2, 1/4 or 1/8 of the pixels
_REDUCED_READ = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
                 8: cv2.IMREAD_REDUCED_COLOR_8}


def decode_image(path: str, factor: int = 1) -> tuple[np.ndarray, int]:
    """Decode an image file to (H, W, 3) uint8 BGR, a JPEG at 1/``factor`` of each side (1, 2, 4 or 8) and
    any other format whole; returns the image and the factor applied. Raises a one-line UserInputError
    naming the file (``image_problem``, a file OpenCV cannot decode, or a truncated JPEG)."""
    problem = image_problem(path)
    if problem is not None:
        raise UserInputError(problem)
    try:
        state = jpeg_state(path)
    except OSError as err:
        raise UserInputError(f"cannot read image: {path} ({err.strerror})") from None
    if state == "truncated":
        raise UserInputError(f"truncated image: {path} (a JPEG without its end marker: cut short on copy or "
                             f"download)")
    factor = factor if state == "whole" else 1  # other formats would be decoded whole, then resized
    image = cv2.imread(path, _REDUCED_READ[factor])
    if image is None:
        raise UserInputError(f"cannot decode image: {path} (expected a JPEG/PNG file)")
    return image, factor


def read_image(path: str) -> np.ndarray:
    """Decode an image file to (H, W, 3) uint8 RGB; errors as ``decode_image``."""
    return cv2.cvtColor(decode_image(path)[0], cv2.COLOR_BGR2RGB)


def decode_factor(span: float, input_res: int) -> int:
    """The largest JPEG decode reduction, 1, 2, 4 or 8, that leaves at least one decoded pixel per crop
    pixel when a crop of ``input_res`` px spans ``span`` original px (the person box times the zoom)."""
    return next(f for f in (8, 4, 2, 1) if span >= f * input_res or f == 1)


MAX_COORD = 1e5  # px: beyond any photo's size; a coordinate past it is corrupt, not a position


def check_values(values: np.ndarray, path: str, what: str, names: list[str] | None = None,
                 used: np.ndarray | None = None, low: float = -MAX_COORD, high: float = MAX_COORD) -> None:
    """Refuse annotations with a NaN/inf or out-of-range number: one line naming ``path`` and the first bad
    sample (0-based row of the file, with its image name).

    values (N, ...) per sample; ``used`` (broadcastable to ``values``) masks the entries that count (labelled
    joints); ``low``/``high`` the allowed range, both inclusive (original px for coordinates)."""
    if values.size == 0:  # no samples (the caller says whether that is allowed) or no entries per sample
        return
    bad = ~np.isfinite(values) | (values < low) | (values > high)
    if used is not None:
        bad &= np.broadcast_to(used, values.shape)
    rows = np.flatnonzero(bad.reshape(len(values), -1).any(axis=1))
    if len(rows):
        i = int(rows[0])
        value = values[i][bad[i]].flat[0]
        name = f" ({names[i]})" if names is not None else ""
        span = f" in [{low:g}, {high:g}]" if math.isfinite(low) or math.isfinite(high) else ""
        raise UserInputError(f"{path}: {what} of sample {i}{name} is {value:g}; expected a finite number{span}")


def check_flags(flags: np.ndarray, path: str, what: str, expected: str, names: list[str] | None = None) -> None:
    """Refuse a 0/1 flag (N, J) holding anything else: one line naming ``path``, the first bad sample (with its
    image name) and joint. A 7 is a corrupt or foreign file, not a label: read as "nonzero" it would count."""
    bad = np.argwhere((flags != 0) & (flags != 1))
    if len(bad):
        i, j = (int(v) for v in bad[0])
        name = f" ({names[i]})" if names is not None else ""
        raise UserInputError(f"{path}: {what} of sample {i}{name}, joint {j} is {flags[i, j]:g}; expected {expected}")


def person_box_from_joints(joints: np.ndarray, annotated: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """Square person box per sample: centred on the annotated joints' bounding box, side = margin x its larger side.

    joints (N, J, 2), annotated (N, J) -> centers (N, 2), sides (N,). Samples with no annotated
    joint get a 1 px box at the origin (they are not scored either).
    """
    big = np.where(annotated[..., None], joints, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: handled below
        lo, hi = np.nanmin(big, axis=1), np.nanmax(big, axis=1)
    centers = np.nan_to_num((lo + hi) / 2)
    sides = np.nan_to_num(margin * np.max(hi - lo, axis=1), nan=1.0)
    return centers, np.maximum(sides, 1.0)


_LEVELS = np.arange(256, dtype=np.float32)[:, None]  # (256, 1) every uint8 value


def rgba_pays(image: np.ndarray, input_res: int) -> bool:
    """Whether a 3-channel image is small enough (at most 4x the crop's pixels) that converting it to RGBA for
    OpenCV's faster 4-channel warp costs less than it saves (``warp_crop``)."""
    return image.ndim == 3 and image.shape[2] == 3 and image.shape[0] * image.shape[1] <= 4 * input_res**2


def warp_source(image: np.ndarray, input_res: int) -> np.ndarray:
    """RGB image -> what the decoded-image cache keeps: RGBA where ``rgba_pays``, so that ``warp_crop`` takes
    OpenCV's 4-channel warp without converting it each time."""
    return cv2.cvtColor(image, cv2.COLOR_RGB2RGBA) if rgba_pays(image, input_res) else image


def warp(source: np.ndarray, affine: np.ndarray, input_res: int) -> np.ndarray:
    """The (R, R, C) uint8 crop of ``source`` through ``affine`` (source px -> crop px), bilinear, zero outside."""
    return cv2.warpAffine(source, affine, (input_res, input_res), flags=cv2.INTER_LINEAR)


def warp_crop(source: np.ndarray, affine: np.ndarray, input_res: int, bgr: bool = False) -> np.ndarray:
    """The (R, R, 3) uint8 RGB crop of a (H, W, 3) RGB or BGR (``bgr``) or (H, W, 4) RGBA image through
    ``affine`` (source px -> crop px).

    The warp reads only the source pixels it samples, and a BGR image is put in RGB order on the crop's
    R^2 pixels, not on the whole frame. A small image (at most 4x the crop's pixels) is converted to RGBA
    first: OpenCV's 4-channel bilinear warp is up to 2x faster than its 3-channel one and gives the same
    values, each channel being interpolated on its own; for a larger image the conversion would cost more
    than it saves."""
    if rgba_pays(source, input_res):
        source, bgr = cv2.cvtColor(source, cv2.COLOR_BGR2RGBA if bgr else cv2.COLOR_RGB2RGBA), False
    crop = warp(source, affine, input_res)
    if crop.shape[2] == 4:
        return cv2.cvtColor(crop, cv2.COLOR_RGBA2RGB)
    return cv2.cvtColor(crop, cv2.COLOR_BGR2RGB) if bgr else crop


def pixel_transform(gain: np.ndarray, bias: np.ndarray, mean, std) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (scale, offset), (3,) float32 each, such that the normalised value of a uint8 pixel is
    ``pixel * scale + offset`` = ``(pixel / 255 * gain + bias - mean) / std``: colour jitter and
    normalisation in one multiply-add."""
    inv_std = 1.0 / np.asarray(std, np.float32)
    return gain * inv_std / 255.0, (bias - np.asarray(mean, np.float32)) * inv_std


def normalise(crop: np.ndarray, scale: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """(R, R, 3|4) uint8 -> (3, R, R) float32 ``pixel * scale + offset`` per channel (``pixel_transform``).

    The multiply-add is evaluated once per uint8 level (a 256-entry table per channel, bit-identical to
    applying it to every pixel) and looked up by ``cv2.LUT`` straight into channel-first planes."""
    table = _LEVELS * scale + offset  # (256, 3)
    out = np.empty((3, *crop.shape[:2]), np.float32)
    planes = cv2.split(crop)
    for c in range(3):
        written = cv2.LUT(planes[c], np.ascontiguousarray(table[:, c]), dst=out[c])
        if not np.may_share_memory(written, out):  # an OpenCV build that ignored dst
            out[c] = written
    return out


def eval_crop(image_rgb: np.ndarray, center: np.ndarray, side: float, input_res: int, mean, std
              ) -> tuple[torch.Tensor, np.ndarray]:
    """The test-time input of a person: (normalised (3, R, R) tensor, 2x3 affine original px -> crop px).

    The square of ``side`` original px around ``center`` (pixel-centre coordinates), no rotation, flip or
    colour jitter: exactly what every dataset's ``__getitem__`` returns without augmentation."""
    affine = crop_affine(center, side, input_res, 0.0, False)
    crop = warp_crop(image_rgb, affine, input_res)
    scale, offset = pixel_transform(np.ones(3, np.float32), np.zeros(3, np.float32), mean, std)
    return torch.from_numpy(normalise(crop, scale, offset)), affine


_COMPACT_ONLY = ("pixel_scale", "pixel_offset", "heatmap_joints", "heatmap_size", "sigma")


def full_sample(compact: dict) -> dict:
    """A ``compact_sample`` as ``__getitem__`` returns it: the normalised float image and both target maps,
    drawn here with NumPy (the worker's CPU)."""
    out = {k: v for k, v in compact.items() if k not in _COMPACT_ONLY}
    crop, annotated = compact["image"].numpy(), compact["annotated"].numpy() > 0
    heatmaps = draw_gaussians(compact["heatmap_joints"].numpy(), annotated, compact["heatmap_size"],
                              compact["sigma"])
    # occluded joints are a subset of the annotated ones: their maps are copies of the pose maps
    occluded = annotated & ~(compact["visible"].numpy() > 0)
    occlusion = np.zeros_like(heatmaps)
    occlusion[occluded] = heatmaps[occluded]
    out["image"] = torch.from_numpy(normalise(crop, compact["pixel_scale"].numpy(), compact["pixel_offset"].numpy()))
    out["heatmaps"], out["occlusion"] = torch.from_numpy(heatmaps), torch.from_numpy(occlusion)
    return out


def expand_batch(batch: dict, device: torch.device) -> dict:
    """A collated batch of ``compact_sample``s -> the batch of ``__getitem__`` samples, on ``device``.

    The uint8 crops travel to the device and are normalised there (the worker's multiply-add in float32,
    so the same values); the targets are drawn there by ``draw_gaussians_torch`` (float64, as the workers
    draw them). The image comes out (B, 3, R, R) with NHWC strides, the layout channels_last wants."""
    size, sigma = int(batch["heatmap_size"][0]), float(batch["sigma"][0])
    moved = {k: v.to(device, non_blocking=True) for k, v in batch.items()
             if isinstance(v, torch.Tensor) and k not in ("heatmap_size", "sigma")}
    out = {k: v for k, v in moved.items() if k not in _COMPACT_ONLY}
    # (B, R, R, 3) multiply, then add: the rounding of the worker's table, and twice as fast on a CPU as the
    # same on the (B, 3, R, R) view
    scale, offset = moved["pixel_scale"][:, None, None, :], moved["pixel_offset"][:, None, None, :]
    image = moved["image"].float().mul_(scale).add_(offset)
    out["image"] = image.permute(0, 3, 1, 2)  # (B, 3, R, R), NHWC in memory
    heatmaps = draw_gaussians_torch(moved["heatmap_joints"], moved["annotated"], size, sigma)
    occluded = (moved["annotated"] > 0) & ~(moved["visible"] > 0)
    out["heatmaps"], out["occlusion"] = heatmaps, heatmaps * occluded.to(heatmaps.dtype)[..., None, None]
    return out


class PoseDataset(torch.utils.data.Dataset):
    """Base class: subclasses set ``self.spec``, ``self.ann`` and implement ``load_image``."""

    spec: JointSpec
    ann: Annotations
    file_origin = 0.0  # the top-left pixel's centre in the dataset's own files (MPII's are MATLAB's: 1)

    def __init__(
        self,
        input_res: int,
        output_res: int,
        sigma: float,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        augmentation: Augmentation | None,
        seed: int = 0,
        reduced_decode: bool = False,
    ):
        self.input_res, self.output_res, self.sigma = input_res, output_res, sigma
        self.augmentation = augmentation
        self.seed = seed
        self.reduced_decode = reduced_decode  # JPEG files decoded at 1/2, 1/4, 1/8 size where the crop allows
        self.mean, self.std = mean, std
        self._cache: list[np.ndarray] | None = None

    def load_image(self, index: int) -> np.ndarray:
        """(H, W, 3) uint8 RGB image of sample ``index``."""
        raise NotImplementedError

    def image_path(self, index: int) -> str | None:
        """The file sample ``index`` is read from; None for a generated image."""
        return None

    def load_source(self, index: int, factor: int) -> tuple[np.ndarray, int, bool]:
        """Sample ``index``'s image as the warp reads it: (image, decode factor applied, whether BGR).

        A file is decoded by OpenCV as it stores it (BGR) and, if a JPEG, at 1/``factor`` size; the
        channels are put in RGB order on the warped crop. A generated image comes from ``load_image``."""
        path = self.image_path(index)
        if path is None:
            return self.load_image(index), 1, False
        image, factor = decode_image(path, factor)
        return image, factor, True

    def unreadable_images(self, limit: int | None = None) -> list[str]:
        """The one-line errors (``image_problem``) of the first ``limit`` samples' image files that cannot be
        read; a stat of each file, so a split of thousands is checked in well under a second."""
        count = len(self) if limit is None else min(limit, len(self))
        paths = dict.fromkeys(p for p in (self.image_path(i) for i in range(count)) if p is not None)
        return [problem for problem in map(image_problem, paths) if problem is not None]

    def to_file_frame(self, points: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Points (N, J, 2) of samples ``rows`` (N,), from the frame of ``self.ann`` (0-based px of the images it
        reads) to the frame of the dataset's own annotation files, the one predictions files and submissions use."""
        return np.asarray(points, np.float64) + self.file_origin

    def from_file_frame(self, points: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Inverse of ``to_file_frame``: a predictions file's points in the frame of ``self.ann``."""
        return np.asarray(points, np.float64) - self.file_origin

    def cache_images(self) -> None:
        """Decode every image once into RAM (in the layout ``warp`` reads); forked DataLoader workers share
        the pages."""
        self._cache = [warp_source(self.load_image(i), self.input_res) for i in range(len(self))]

    def __len__(self) -> int:
        return len(self.ann)

    def random_transform(self, rng: np.random.Generator) -> tuple[float, float, bool, np.ndarray, np.ndarray]:
        """One draw of the augmentation: rotation (deg), zoom, flip, per-channel gain (3,), bias (3,)."""
        aug = self.augmentation
        rotation = rng.uniform(-aug.rotation, aug.rotation) if aug.rotation > 0 else 0.0
        zoom = rng.uniform(aug.scale_min, aug.scale_max)
        flip = bool(aug.flip and rng.random() < 0.5)
        gain = 1.0 + rng.uniform(-aug.color_jitter, aug.color_jitter, size=3)
        bias = rng.uniform(-aug.color_jitter, aug.color_jitter) * 0.5
        return rotation, zoom, flip, gain.astype(np.float32), np.full(3, bias, np.float32)

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        """``key`` is an index, or ``(index, epoch)`` from ``EpochSampler`` so augmentation varies per epoch."""
        return full_sample(self.compact_sample(key))

    def compact_sample(self, key: int | tuple[int, int]) -> dict:
        """The sample of ``key`` (as ``__getitem__``) before normalisation and target drawing: see the module
        docstring. With ``reduced_decode`` a JPEG is decoded at the smallest size that still gives the crop
        at least one decoded pixel per crop pixel (``decode_factor``) at this sample's zoom."""
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        ann = self.ann
        rotation, zoom, flip = 0.0, 1.0, False
        gain, bias = np.ones(3, np.float32), np.zeros(3, np.float32)
        if self.augmentation is not None:
            rng = np.random.default_rng((self.seed, epoch, index))
            rotation, zoom, flip, gain, bias = self.random_transform(rng)
        span = ann.box_sizes[index] * zoom
        affine = crop_affine(ann.centers[index], span, self.input_res, rotation, flip)
        if self._cache is not None:
            source, factor, bgr = self._cache[index], 1, False
        else:
            wanted = decode_factor(span, self.input_res) if self.reduced_decode else 1
            source, factor, bgr = self.load_source(index, wanted)
        crop = warp_crop(source, decoded_affine(affine, factor) if factor > 1 else affine, self.input_res, bgr)

        joints, annotated, visible = ann.joints[index], ann.annotated[index], ann.visible[index]
        if flip:
            perm = self.spec.flip_permutation()
            joints, annotated, visible = joints[perm], annotated[perm], visible[perm]
        joints_in = apply_affine(affine, joints)
        scale, offset = pixel_transform(gain, bias, self.mean, self.std)
        return {
            "image": torch.from_numpy(crop),
            "pixel_scale": torch.from_numpy(scale),
            "pixel_offset": torch.from_numpy(offset),
            "heatmap_joints": torch.from_numpy(input_to_heatmap(joints_in, self.input_res, self.output_res)),
            "heatmap_size": self.output_res,
            "sigma": self.sigma,
            "joints": torch.from_numpy(joints_in.astype(np.float32)),
            "visible": torch.from_numpy(visible.astype(np.float32)),
            "annotated": torch.from_numpy(annotated.astype(np.float32)),
            "affine": torch.from_numpy(affine),
            "index": index,
            "ref_length": float(ann.ref_lengths[index]),
        }
