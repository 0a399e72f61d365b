"""MPII Human Pose in the stacked-hourglass layout: ``annot/{train,valid,test}.h5`` and ``images/``."""

from __future__ import annotations

import os

import h5py
import numpy as np

from datasets.base import MAX_COORD, Annotations, PoseDataset, check_flags, check_values, read_image
from datasets.skeleton import MPII
from storage.io import open_h5
from utils.errors import UserInputError

SPLITS = {"train": "train.h5", "valid": "valid.h5", "val": "valid.h5", "test": "test.h5"}


LABEL_KEYS = ("part", "visible", "normalize")  # in train/valid files; test files have no joints
# MPII's coordinates are MATLAB's: the top-left pixel's centre is (1, 1) there and (0, 0) in this code. The
# official annotations give joints in fractions of a pixel; Newell's h5 files (and scripts/prepare_mpii.py)
# truncate them to whole pixels, so a stored k came from [k, k + 1) in MATLAB px and is read as that span's
# centre, k + 0.5 - 1 in 0-based px. Predictions files are written in that h5 frame (0-based + H5_ORIGIN), the
# one published validation predictions and tables are scored in; submissions in MATLAB's (inference/submission.py).
MATLAB_ORIGIN = 1.0
H5_ORIGIN = MATLAB_ORIGIN - 0.5


def _read(f: h5py.File, key: str, path: str, shape_tail: tuple[int, ...], numeric: bool = True) -> np.ndarray:
    data = f.get(key)
    if not isinstance(data, h5py.Dataset):
        raise UserInputError(f"{path}: missing dataset '{key}'")
    if numeric and data.dtype.kind not in "iuf":
        raise UserInputError(f"{path}: '{key}' holds {data.dtype} values, expected numbers")
    arr = data[()]
    if arr.ndim == 0 or arr.shape[1:] != shape_tail:
        raise UserInputError(f"{path}: '{key}' has shape {arr.shape}, expected (N, {', '.join(map(str, shape_tail))})")
    return arr.astype(np.float64) if numeric else arr


def joints_from_file(parts: np.ndarray, annotated: np.ndarray) -> np.ndarray:
    """``part`` of an MPII h5 file (N, 16, 2; truncated MATLAB px) -> 0-based original px; (0, 0) where
    ``annotated`` is False, the files' mark of a missing joint."""
    return np.where(annotated[..., None], parts - H5_ORIGIN, 0.0)


def joints_to_file(joints: np.ndarray, annotated: np.ndarray) -> np.ndarray:
    """0-based original px (N, 16, 2) -> ``part`` as the h5 files store it, truncated MATLAB px (the inverse
    of ``joints_from_file`` up to the truncation)."""
    return np.where(annotated[..., None], np.floor(joints + MATLAB_ORIGIN), 0.0)


def load_mpii_annotations(path: str, labelled: bool = True) -> Annotations:
    """Read one h5 file. Person box: the file's ``center``, side 200 x ``scale`` px.

    ``labelled`` (train, valid): ``part``, ``visible`` and ``normalize`` are required like ``imgname``,
    ``center`` and ``scale``; a file without them (test) has no joints and no PCKh reference.
    Non-finite or absurd numbers are refused, naming the first bad sample.

    The stacked-hourglass h5 files already hold Newell et al.'s adjustment of the official annotation
    (centre y + 15 s, scale x 1.25, so fewer feet are cut off): in the real valid.h5 every
    ``center_y - 12 scale`` is a whole pixel, the official ``objpos``. ``scripts/prepare_mpii.py`` writes
    it the same way, so it is not applied again here.

    The returned joints and centres are 0-based original px (``joints_from_file``); the files' are MATLAB's
    (the centres whole MATLAB px, the joints truncated ones)."""
    with open_h5(path, "an MPII annotation file annot/<split>.h5") as f:
        if labelled:
            missing = [k for k in LABEL_KEYS if k not in f]
            if missing:
                raise UserInputError(f"{path}: missing dataset{'s' if len(missing) > 1 else ''} "
                                     f"{', '.join(repr(k) for k in missing)} (a train/valid file needs part, "
                                     f"visible, normalize, center, scale and imgname)")
        names = [s.decode() if isinstance(s, bytes) else str(s) for s in _read(f, "imgname", path, (), False)]
        centers = _read(f, "center", path, (2,))
        scales = _read(f, "scale", path, ())
        n = len(centers)
        parts = _read(f, "part", path, (16, 2)) if "part" in f else np.zeros((n, 16, 2))
        visible = _read(f, "visible", path, (16,)) if "visible" in f else np.zeros((n, 16))
        has_normalize = "normalize" in f
        normalize = _read(f, "normalize", path, ()) if has_normalize else np.full(n, np.nan)  # NaN: not scored
        has_joints = "part" in f  # test.h5 has no joints (scripts/prepare_mpii.py, Newell's files alike)
    if not (len(scales) == len(parts) == len(visible) == len(normalize) == len(names) == n):
        raise UserInputError(f"{path}: datasets have different lengths (expected one entry per person)")
    check_values(centers, path, "'center'", names)
    check_values(scales, path, "'scale'", names, low=1e-6, high=MAX_COORD / 200)  # box side 200 x scale px
    check_values(parts, path, "'part'", names)
    check_flags(visible, path, "'visible'", "0 (occluded) or 1 (visible)", names)
    if has_normalize:
        check_values(normalize, path, "'normalize'", names, low=0.0)
    annotated = ~np.all(parts == 0, axis=-1)  # MPII marks a missing joint with (0, 0)
    return Annotations(
        joints=joints_from_file(parts, annotated),
        annotated=annotated,
        visible=annotated & (visible > 0),
        centers=centers - MATLAB_ORIGIN,
        box_sizes=200.0 * scales,
        ref_lengths=normalize,
        image_names=names,
        labelled=has_joints,
    )


class MPIIDataset(PoseDataset):
    """MPII: 16 joints, PCKh with the file's ``normalize`` (0.6 x head-box diagonal) as reference."""

    spec = MPII
    file_origin = H5_ORIGIN

    def __init__(self, root: str, split: str, split_flag: str = "--split", **pipeline):
        """``split_flag``: the flag that chose ``split``, named when it is not a split of MPII."""
        super().__init__(**pipeline)
        if not os.path.isdir(root):
            raise UserInputError(f"--path: dataset directory not found: {root}")
        if split not in SPLITS:
            raise UserInputError(f"{split_flag}: MPII has no split '{split}'; valid: {', '.join(SPLITS)}")
        self.root, self.split = root, split
        self.ann = load_mpii_annotations(os.path.join(root, "annot", SPLITS[split]), labelled=split != "test")

    def image_path(self, index: int) -> str:
        return os.path.join(self.root, "images", self.ann.image_names[index])

    def load_image(self, index: int) -> np.ndarray:
        return read_image(self.image_path(index))

    def official_ids(self) -> tuple[np.ndarray, np.ndarray]:
        """(index, person) of each sample in the official annotation list (``read_official_ids``)."""
        return read_official_ids(os.path.join(self.root, "annot", SPLITS[self.split]))


def read_official_ids(path: str) -> tuple[np.ndarray, np.ndarray]:
    """(index, person) of every row of an MPII h5 file, 0-based: the image's position in the official
    ``RELEASE.annolist`` and the person's in that image's ``annorect``, as ints (the files store float64)."""
    with open_h5(path, "an MPII annotation file annot/<split>.h5") as f:
        missing = [k for k in ("index", "person") if k not in f]
        if missing:
            raise UserInputError(f"{path}: missing dataset(s) {', '.join(missing)} (needed to place predictions in "
                                 "the official annotation list)")
        index, person = f["index"][()], f["person"][()]
    return np.rint(index).astype(np.int64), np.rint(person).astype(np.int64)
