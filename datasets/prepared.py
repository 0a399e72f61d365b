"""Person-centred crops written once: the training path that decodes no photo.

``PrepareCrops`` warps each person of a dataset split into a ``side`` x ``side`` RGB crop around its box, at
``input_res`` px per box side (the scale of an unzoomed training crop), with room for the largest zoom and
rotation of the augmentation: ``side = ceil(input_res * scale_max * (cos r + sin r)) + 2`` (``prepared_side``;
440 px for 256 px input, zoom 1.25 and 30 degrees), the square that holds the turned crop plus the pixel
that bilinear interpolation reads beyond it. JPEG photos are decoded at the smallest size that keeps one
decoded pixel per crop pixel.

A prepared folder holds, per split, ``<split>.npy`` (N, side, side, 3) uint8, which DataLoader workers
memory-map, and ``<split>.h5``: the annotations in crop px (the crop is a similarity of the photo: joints
and box centre mapped, box side and metric reference length scaled, so PCK/PCKh are the photo's), each
crop's ``affines`` (photo px -> crop px, to take predictions back to the photo) and, as attributes, what
the crops were made for and ``file_origin``, the source dataset's (its files' frame, in which predictions files
are written: ``to_file_frame``). ``PreparedMPII`` and ``PreparedLSP`` read it as any other dataset
(``--dataset mpii_prepared --path <folder>``, ``lsp_prepared`` for LSP and LSPET); ``python -m scripts.prepare_crops``
writes it.
"""

from __future__ import annotations

import os

import h5py
import numpy as np
import torch

from datasets.base import Annotations, PoseDataset, decode_factor, warp_crop
from datasets.skeleton import LSP, MPII, JointSpec
from storage.io import open_h5
from utils.errors import UserInputError
from utils.geometry import apply_affine, crop_affine, decoded_affine, invert_affine, rotated_extent

FORMAT = 1
SPECS: dict[str, JointSpec] = {"mpii": MPII, "lsp": LSP}
ALIASES = {"val": "valid", "valid": "val"}  # MPII calls its validation split "valid", LSPET "val"


def prepared_side(input_res: int, scale_max: float, rotation: float) -> int:
    """Side in px of a prepared crop (see the module docstring)."""
    return int(np.ceil(input_res * scale_max * rotated_extent(rotation))) + 2


def prepared_affine(center: np.ndarray, box: float, input_res: int, side: int) -> np.ndarray:
    """2x3 original px -> prepared-crop px: the box centre to the crop's centre, ``box`` px to ``input_res``."""
    return crop_affine(center, box * side / input_res, side)


class PrepareCrops(torch.utils.data.Dataset):
    """Sample ``i`` of ``dataset`` -> (crop (side, side, 3) uint8 RGB, affine original px -> crop px)."""

    def __init__(self, dataset: PoseDataset, input_res: int, side: int):
        self.dataset, self.input_res, self.side = dataset, input_res, side

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        ann = self.dataset.ann
        box = float(ann.box_sizes[index])
        affine = prepared_affine(ann.centers[index], box, self.input_res, self.side)
        factor = decode_factor(box * self.side / self.input_res, self.side)
        source, factor, bgr = self.dataset.load_source(index, factor)
        return warp_crop(source, decoded_affine(affine, factor), self.side, bgr), affine


def prepared_annotations(ann: Annotations, affines: np.ndarray, input_res: int) -> dict[str, np.ndarray]:
    """``ann`` in the crop frames of ``affines`` (N, 2, 3), as the arrays of a ``<split>.h5``."""
    scale = input_res / ann.box_sizes  # crop px per original px
    return {
        "joints": apply_affine(affines, ann.joints), "annotated": ann.annotated, "visible": ann.visible,
        "centers": apply_affine(affines, ann.centers[:, None])[:, 0], "box_sizes": np.full(len(ann), float(input_res)),
        "ref_lengths": ann.ref_lengths * scale, "affines": affines,
        "image_names": np.array([n.encode() for n in ann.image_names]),
    }


def write_annotations(path: str, arrays: dict[str, np.ndarray], attrs: dict) -> None:
    """One split's ``<split>.h5`` (``path`` is where to write it: the caller renames it into place)."""
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            f.create_dataset(key, data=value)
        f.attrs.update(attrs)


def crop_attrs(spec: JointSpec, input_res: int, side: int, scale_max: float, rotation: float, labelled: bool,
               source: str, file_origin: float) -> dict:
    """The attributes of a ``<split>.h5``: the format, joint layout, what the crops allow and the source's
    file frame (``PoseDataset.file_origin``)."""
    name = next(k for k, v in SPECS.items() if v == spec)
    return {"format": FORMAT, "spec": name, "input_res": input_res, "side": side, "scale_max": scale_max,
            "rotation": rotation, "labelled": labelled, "source": source, "file_origin": file_origin}


class PreparedDataset(PoseDataset):
    """A prepared split: crops memory-mapped from ``<root>/<split>.npy``, annotations from ``<split>.h5``.

    Refused with one line when it holds another joint layout than the subclass's ``spec``, or when the
    config asks for more than the crops hold: a larger ``input_res`` (the crops would be enlarged), or, for
    training, a larger zoom or rotation (the corners would be empty)."""


    def __init__(self, root: str, split: str, split_flag: str = "--split", **pipeline):
        """``split_flag``: the flag that chose ``split``, named when ``root`` holds no such split."""
        super().__init__(**pipeline)
        if not os.path.isdir(root):
            raise UserInputError(f"--path: prepared folder not found: {root}")
        if not os.path.isfile(os.path.join(root, f"{split}.h5")) and split in ALIASES:
            split = ALIASES[split]
        self.root, self.split = root, split
        path = os.path.join(root, f"{split}.h5")
        if not os.path.isfile(path):
            found = sorted(n[:-3] for n in os.listdir(root) if n.endswith(".h5"))
            raise UserInputError(f"{split_flag}: no prepared split '{split}' in {root}; found: "
                                 f"{', '.join(found) or 'none'} (scripts/prepare_crops.py writes them)")
        with open_h5(path, "a prepared split written by scripts/prepare_crops.py") as f:
            attrs = dict(f.attrs)
            if attrs.get("format") != FORMAT or attrs.get("spec") not in SPECS:
                raise UserInputError(f"{path}: not a prepared split of format {FORMAT} (scripts/prepare_crops.py "
                                     f"writes them)")
            if SPECS[str(attrs["spec"])] != self.spec:
                raise UserInputError(f"{path}: crops of {attrs['spec']} people; read them with --dataset "
                                     f"{attrs['spec']}_prepared")
            if "file_origin" not in attrs and attrs["spec"] == "mpii":
                raise UserInputError(f"{path}: prepared before MPII's MATLAB coordinates were moved to 0-based "
                                     f"px (its joints are half a pixel off); prepare it again "
                                     f"(scripts/prepare_crops.py)")
            arrays = {k: f[k][()] for k in ("joints", "annotated", "visible", "centers", "box_sizes", "ref_lengths",
                                            "image_names", "affines")}
        self.attrs = attrs
        self.file_origin = float(attrs.get("file_origin", 0.0))
        self.affines = arrays["affines"]
        self._check_config(path)
        self.ann = Annotations(
            joints=arrays["joints"], annotated=arrays["annotated"].astype(bool),
            visible=arrays["visible"].astype(bool), centers=arrays["centers"], box_sizes=arrays["box_sizes"],
            ref_lengths=arrays["ref_lengths"], image_names=[n.decode() for n in arrays["image_names"]],
            labelled=bool(attrs["labelled"]))
        self.crops_path = os.path.join(root, f"{split}.npy")
        try:
            self.crops = np.load(self.crops_path, mmap_mode="r")
        except (OSError, ValueError) as err:
            raise UserInputError(f"cannot read {self.crops_path} as a prepared crop array ({err})") from None
        side = int(attrs["side"])
        if self.crops.shape != (len(self.ann), side, side, 3) or self.crops.dtype != np.uint8:
            raise UserInputError(f"{self.crops_path}: holds {self.crops.dtype} {self.crops.shape}, expected uint8 "
                                 f"({len(self.ann)}, {side}, {side}, 3) as {path} says; prepare it again")

    def _check_config(self, path: str) -> None:
        a, aug = self.attrs, self.augmentation
        asks = []
        if self.input_res > a["input_res"]:
            asks.append(f"input_res={self.input_res} (crops made for {a['input_res']})")
        if aug is not None and aug.scale_max > a["scale_max"] + 1e-9:
            asks.append(f"scale_max={aug.scale_max} (crops made for {a['scale_max']})")
        if aug is not None and abs(aug.rotation) > a["rotation"] + 1e-9:
            asks.append(f"rotation={aug.rotation} (crops made for {a['rotation']})")
        if asks:
            raise UserInputError(f"{path}: the config asks for {', '.join(asks)}; prepare the crops again with "
                                 f"this config (scripts/prepare_crops.py)")

    def to_file_frame(self, points: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Crop px of samples ``rows`` -> the source photos' file frame (through each crop's affine)."""
        photo = apply_affine(invert_affine(self.affines[np.asarray(rows)]), points)
        return photo + self.file_origin

    def from_file_frame(self, points: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """The source photos' file frame -> crop px of samples ``rows``."""
        return apply_affine(self.affines[np.asarray(rows)], np.asarray(points, np.float64) - self.file_origin)

    def load_image(self, index: int) -> np.ndarray:
        """(side, side, 3) uint8 RGB crop of sample ``index``, a view of the memory-mapped array."""
        return self.crops[index]


class PreparedMPII(PreparedDataset):
    """Prepared crops of MPII people (16 joints, PCKh)."""

    spec = MPII


class PreparedLSP(PreparedDataset):
    """Prepared crops of LSP or LSPET people (14 joints, PCK)."""

    spec = LSP
