"""Score predictions against a dataset split, and read/write the predictions and metrics files."""

from __future__ import annotations

import io
import os

import h5py
import numpy as np

from datasets.base import MAX_COORD, PoseDataset
from inference.metrics import counted_joints, format_table, pck_metrics
from storage.io import open_h5, write_bytes, write_json
from utils.errors import UserInputError


def score_predictions(
    preds: np.ndarray, dataset: PoseDataset, alpha: float | None = None, indices: np.ndarray | None = None
) -> dict:
    """Evaluate ``preds`` (N, J, 2) in original px against the dataset's labels (or the rows ``indices``)."""
    ann = dataset.ann
    if not ann.labelled:  # callers check first (test.py predicts without a metric); this guards the rest
        raise UserInputError("this split has no joint labels (e.g. MPII's test split): there is no metric to compute")
    sel = np.arange(len(ann)) if indices is None else np.asarray(indices)
    result = pck_metrics(
        preds, ann.joints[sel], ann.annotated[sel], ann.visible[sel], ann.ref_lengths[sel], dataset.spec, alpha
    )
    unusable = unusable_predictions(preds, counted_joints(ann.annotated[sel], ann.ref_lengths[sel]), sel, dataset)
    if unusable is not None:
        result["unusable_predictions"] = unusable
    return result


def unusable_predictions(preds: np.ndarray, counted: np.ndarray, rows: np.ndarray, dataset: PoseDataset
                         ) -> dict | None:
    """The scored joints (``counted`` (N, J)) whose prediction (N, J, 2) is NaN, infinite or beyond
    ``MAX_COORD`` px, or None when there are none. They are scored as misses, as the official MPII and LSP
    evaluations score a joint without a usable prediction; this record says how many and where the first is,
    so that a broken predictions file or model is not read as a poor one."""
    bad = (~np.isfinite(preds).all(axis=-1) | (np.abs(np.nan_to_num(preds)) > MAX_COORD).any(axis=-1)) & counted
    if not bad.any():
        return None
    i, j = (int(v) for v in np.argwhere(bad)[0])
    return {"joints": int(bad.sum()), "samples": int(bad.any(axis=1).sum()), "scored_joints": int(counted.sum()),
            "first_sample": int(rows[i]), "first_image": dataset.ann.image_names[int(rows[i])],
            "first_joint": dataset.spec.names[j], "scored_as": "misses"}


def describe_unusable(record: dict) -> str:
    """One line about ``unusable_predictions``' record."""
    return (f"{record['joints']} of {record['scored_joints']} scored joints ({record['samples']} samples) have "
            f"no usable prediction (NaN, infinite or beyond {MAX_COORD:g} px; first: sample "
            f"{record['first_sample']} ({record['first_image']}), {record['first_joint']})")


def read_predictions(path: str, num_samples: int, num_joints: int) -> np.ndarray:
    """Load dataset ``preds`` (N, J, 2) from an h5 file, checking it matches the split."""
    with open_h5(path, "an h5 file with dataset 'preds'", "--predictions") as f:
        data = f.get("preds")
        if not isinstance(data, h5py.Dataset):
            raise UserInputError(f"{path}: no dataset 'preds' (expected N x J x 2 original-image px)")
        if data.dtype.kind not in "iuf":
            raise UserInputError(f"{path}: 'preds' holds {data.dtype} values, expected numbers "
                                 f"(N x J x 2 original-image px)")
        preds = np.asarray(data[()], np.float64)
    if preds.shape != (num_samples, num_joints, 2):
        raise UserInputError(
            f"{path}: 'preds' has shape {preds.shape}, expected ({num_samples}, {num_joints}, 2) for this split"
        )
    return preds


def write_predictions(path: str, preds: np.ndarray, scores: np.ndarray | None = None) -> None:
    """Save ``preds`` (N, J, 2) px (test.py: in the dataset's file frame) and optional per-joint ``scores`` as
    h5, atomically: the file is built in memory, then written beside ``path`` and renamed, so a full disk leaves
    the old file whole."""
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        f.create_dataset("preds", data=np.asarray(preds, np.float64))
        if scores is not None:
            f.create_dataset("scores", data=np.asarray(scores, np.float32))
    write_bytes(path, buffer.getvalue())


def write_metrics(outdir: str, result: dict, dataset_name: str, split: str) -> str:
    """Write ``metrics.json``: dataset, split and ``result`` (metric, per_joint, mean, count, mean_unweighted,
    mean_at_0.1, auc, head_official, joints, visibility, curve; see inference.metrics for the conventions)."""
    record = {"dataset": dataset_name, "split": split, **result}
    return write_json(os.path.join(outdir, "metrics.json"), record)


def report(result: dict) -> str:
    """The printed summary: table (groups, headline Mean, the other conventions' figures, every joint) plus
    the visible/occluded split."""
    vis = result["visibility"]
    return (
        f"{format_table(result)}\n"
        f"joints in Mean: {result['count']}   visible: {vis['visible']:.2f} ({vis['visible_count']})"
        f"   occluded: {vis['occluded']:.2f} ({vis['occluded_count']})"
    )
