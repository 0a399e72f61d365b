"""Leeds Sports Pose (LSP, 2000 images) and its extension LSPET: ``joints.mat`` plus ``images/``.

LSP: ``joints`` 3x14xN, flag 0 = visible, every joint labelled; first 1000 = train, last 1000 = test.
LSPET: ``joints`` 14x3xN, flag 1 = labelled (no occlusion labels); last floor(N/10) = val, rest = train.
Person box (both): square around the labelled joints, side = ``box_margin`` x their larger extent.
PCK reference: torso diameter (``lsp_torso_lengths``).
"""

from __future__ import annotations

import os

import numpy as np
import scipy.io

from datasets.base import Annotations, PoseDataset, check_flags, check_values, person_box_from_joints, read_image
from datasets.skeleton import LSP, LSP_TORSO_DIAGONALS
from utils.errors import UserInputError


def lsp_torso_lengths(gt: np.ndarray, annotated: np.ndarray) -> np.ndarray:
    """PCK reference per sample: ||l_shoulder - r_hip||, else ||r_shoulder - l_hip||, else NaN.

    gt: (N, 14, 2) LSP joint order; annotated: (N, 14) bool. Returns (N,).
    """
    out = np.full(len(gt), np.nan)
    for a, b in reversed(LSP_TORSO_DIAGONALS):  # the first diagonal wins when both are whole
        whole = annotated[:, a] & annotated[:, b]
        out[whole] = np.linalg.norm(gt[whole, a] - gt[whole, b], axis=-1)
    return out


def _load_joints_mat(root: str) -> np.ndarray:
    path = os.path.join(root, "joints.mat")
    if not os.path.isfile(path):
        raise UserInputError(f"annotation file not found: {path} (expected joints.mat beside images/)")
    try:
        mat = scipy.io.loadmat(path)
    except NotImplementedError:  # scipy reads MATLAB v4 to v7 files, not v7.3 (HDF5)
        raise UserInputError(f"cannot read {path}: a MATLAB v7.3 file; save it with -v7") from None
    except Exception as err:  # scipy raises many types for a corrupt file: MatReadError, OSError, IndexError ...
        raise UserInputError(f"cannot read {path} as a MATLAB file ({type(err).__name__}: {err})") from None
    if "joints" not in mat:
        raise UserInputError(f"{path}: no variable 'joints'")
    if mat["joints"].dtype.kind not in "iuf":
        raise UserInputError(f"{path}: 'joints' holds {mat['joints'].dtype} values, expected numbers "
                             f"(pixel coordinates and flags)")
    return np.asarray(mat["joints"], np.float64)


def _split_indices(n: int, split: str, splits: dict[str, slice], name: str, flag: str) -> np.ndarray:
    if split not in splits:
        raise UserInputError(f"{flag}: {name} has no split '{split}'; valid: {', '.join(splits)}")
    return np.arange(n)[splits[split]]


class _LeedsDataset(PoseDataset):
    spec = LSP
    name_format = ""

    def __init__(self, root: str, split: str, box_margin: float, split_flag: str = "--split", **pipeline):
        """``split_flag``: the flag that chose ``split``, named when it is not a split of the dataset."""
        super().__init__(**pipeline)
        if not os.path.isdir(root):
            raise UserInputError(f"--path: dataset directory not found: {root}")
        self.root, self.split = root, split
        path = os.path.join(root, "joints.mat")
        joints, annotated, visible = self._read_all(_load_joints_mat(root), path)
        names = [self.name_format.format(i + 1) for i in range(len(joints))]
        check_values(joints, path, "a labelled joint coordinate", names, used=annotated[..., None])
        idx = _split_indices(len(joints), split, self._splits(len(joints)), type(self).__name__, split_flag)
        joints, annotated, visible = joints[idx], annotated[idx], visible[idx]
        centers, sides = person_box_from_joints(joints, annotated, box_margin)
        self.ann = Annotations(
            joints=joints,
            annotated=annotated,
            visible=visible,
            centers=centers,
            box_sizes=sides,
            ref_lengths=lsp_torso_lengths(joints, annotated),
            image_names=[names[i] for i in idx],
        )

    def image_path(self, index: int) -> str:
        return os.path.join(self.root, "images", self.ann.image_names[index])

    def load_image(self, index: int) -> np.ndarray:
        return read_image(self.image_path(index))


class LSPDataset(_LeedsDataset):
    """The original LSP: every joint labelled, flag 0 = visible."""

    name_format = "im{:04d}.jpg"

    @staticmethod
    def _splits(n: int) -> dict[str, slice]:
        return {"train": slice(0, 1000), "test": slice(1000, n), "all": slice(0, n)}

    @staticmethod
    def _read_all(raw: np.ndarray, path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if raw.ndim != 3 or raw.shape[:2] != (3, 14) or raw.shape[2] == 0:
            raise UserInputError(f"{path}: 'joints' has shape {raw.shape}, expected 3x14xN with N >= 1 samples "
                                 f"(LSP layout)")
        check_flags(raw[2].T, path, "a visibility flag", "0 (visible) or 1 (occluded)")
        joints = raw[:2].transpose(2, 1, 0)  # (N, 14, 2)
        annotated = np.ones(joints.shape[:2], bool)
        return joints, annotated, raw[2].T == 0


class LSPETDataset(_LeedsDataset):
    """LSP Extended: flag 1 = labelled; no occlusion labels, so labelled joints count as visible."""

    name_format = "im{:05d}.jpg"

    @staticmethod
    def _splits(n: int) -> dict[str, slice]:
        n_val = n // 10
        return {"train": slice(0, n - n_val), "val": slice(n - n_val, n), "all": slice(0, n)}

    @staticmethod
    def _read_all(raw: np.ndarray, path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if raw.ndim != 3 or raw.shape[:2] != (14, 3) or raw.shape[2] == 0:
            raise UserInputError(f"{path}: 'joints' has shape {raw.shape}, expected 14x3xN with N >= 1 samples "
                                 f"(LSPET layout)")
        check_flags(raw[:, 2].T, path, "a label flag", "0 (not labelled) or 1 (labelled)")
        joints = raw[:, :2].transpose(2, 0, 1)  # (N, 14, 2)
        annotated = raw[:, 2].T > 0
        return np.where(annotated[..., None], joints, 0.0), annotated, annotated.copy()
