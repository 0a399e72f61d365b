"""PCKh / PCK on hand-built cases and on the real MPII validation and LSP annotations."""

import numpy as np
import pytest

from datasets.lsp import LSPDataset, lsp_torso_lengths
from datasets.mpii import MPIIDataset
from datasets.skeleton import LSP, MPII
from inference.metrics import normalized_distances, pck_metrics

PIPE = {"input_res": 64, "output_res": 16, "sigma": 1.0, "mean": (0.5,) * 3, "std": (0.25,) * 3, "augmentation": None}


@pytest.fixture
def mpii(mpii_root):
    return MPIIDataset(mpii_root, "valid", **PIPE).ann


def _mpii_eval(ann, preds):
    return pck_metrics(preds, ann.joints, ann.annotated, ann.visible, ann.ref_lengths, MPII)


def test_mpii_ground_truth_scores_100(mpii):
    r = _mpii_eval(mpii, mpii.joints.copy())
    assert r["mean"] == 100.0 and all(v == 100.0 for v in r["per_joint"].values())
    mean_joints = [j for j in range(16) if j not in (6, 7)]  # all but pelvis and thorax
    assert r["count"] == mpii.annotated[:, mean_joints].sum()
    assert r["metric"] == "PCKh@0.5"


def test_mpii_known_offsets_give_hand_derived_values(mpii):
    preds = mpii.joints.copy()
    ref = mpii.ref_lengths
    # Every wrist 0.6 head sizes off (miss); every other joint 0.49 head sizes off along y (hit).
    preds[:, :, 1] += 0.49 * ref[:, None]
    preds[:, [10, 15], 0] += 0.6 * ref[:, None]
    preds[:, [10, 15], 1] -= 0.49 * ref[:, None]
    # Odd samples: every joint 0.51 off (miss).
    preds[1::2] = mpii.joints[1::2] + np.stack([0.51 * ref[1::2], 0 * ref[1::2]], -1)[:, None]
    r = _mpii_eval(mpii, preds)
    ann = mpii.annotated
    mean_joints = [j for j in range(16) if j not in (6, 7)]
    n_mean = ann[:, mean_joints].sum()
    hits = ann[0::2][:, [j for j in mean_joints if j not in (10, 15)]].sum()
    assert r["per_joint"]["Wrist"] == 0.0
    assert r["per_joint"]["Head"] == pytest.approx(100.0 * ann[0::2, 9].sum() / ann[:, 9].sum())
    assert r["mean"] == pytest.approx(100.0 * hits / n_mean)


def test_pckh_threshold_just_inside_and_just_outside_and_monotone_curve(mpii):
    preds = mpii.joints.copy()
    preds[:, :, 0] += 0.2499 * mpii.ref_lengths[:, None]
    r = pck_metrics(preds, mpii.joints, mpii.annotated, mpii.visible, mpii.ref_lengths, MPII, alpha=0.25)
    assert r["mean"] == 100.0
    outside = pck_metrics(preds, mpii.joints, mpii.annotated, mpii.visible, mpii.ref_lengths, MPII, alpha=0.2498)
    assert outside["mean"] == 0
    curve = np.array(r["curve"]["mean"])
    assert np.all(np.diff(curve) >= 0) and curve[0] == 0.0 and curve[-1] == 100.0


def test_visibility_breakdown_separates_occluded_joints(mpii):
    preds = mpii.joints.copy()
    occluded = mpii.annotated & ~mpii.visible
    preds[occluded] += 1e6
    r = _mpii_eval(mpii, preds)
    assert r["visibility"]["visible"] == 100.0 and r["visibility"]["occluded"] == 0.0
    assert r["visibility"]["visible_count"] + r["visibility"]["occluded_count"] == r["count"]


def test_lsp_torso_reference_uses_the_other_diagonal_and_skips_broken_torsos():
    gt = np.zeros((3, 14, 2))
    gt[:, 9] = [0, 0]  # l_shoulder
    gt[:, 2] = [3, 4]  # r_hip -> diagonal 5
    gt[:, 8] = [0, 0]  # r_shoulder
    gt[:, 3] = [6, 8]  # l_hip -> diagonal 10
    ann = np.ones((3, 14), bool)
    ann[1, 2] = False  # first diagonal broken -> use the second
    ann[2, [2, 3]] = False  # both broken -> skipped
    ref = lsp_torso_lengths(gt, ann)
    assert ref[0] == 5.0 and ref[1] == 10.0 and np.isnan(ref[2])
    r = pck_metrics(gt + 1.0, gt, ann, ann, ref, LSP)
    assert r["count"] == ann[:2].sum()  # the skipped sample contributes nothing


def test_pck_on_real_lsp_annotations(lsp_root):
    ann = LSPDataset(lsp_root, "test", box_margin=1.3, **PIPE).ann
    preds = ann.joints.copy()
    preds[:, 13, 0] += 0.21 * ann.ref_lengths  # head tops just outside PCK@0.2
    r = pck_metrics(preds, ann.joints, ann.annotated, ann.visible, ann.ref_lengths, LSP)
    assert r["metric"] == "PCK@0.2" and r["count"] == 14 * 1000
    assert r["per_joint"]["Head"] == 50.0  # neck right, head top wrong
    assert r["mean"] == pytest.approx(100.0 * 13 / 14)


def test_normalized_distance_is_error_over_reference():
    d = normalized_distances(np.array([[[3.0, 4.0]]]), np.zeros((1, 1, 2)), np.array([10.0]))
    assert d[0, 0] == pytest.approx(0.5)


def test_per_sample_hits_add_up_to_the_mean():
    gt = np.zeros((3, 14, 2))
    gt[:, :, 0] = np.arange(14) * 10.0
    ref = np.array([10.0, 10.0, np.nan])  # sample 2 has no torso: none of its joints counts
    ann = np.ones((3, 14), bool)
    ann[1, :4] = False
    preds = gt.copy()
    preds[0, :5, 1] += 3.0  # 0.3 torso lengths off: 5 misses at PCK@0.2
    r = pck_metrics(preds, gt, ann, ann, ref, LSP)
    assert r["per_sample"] == {"hits": [9, 10, 0], "counted": [14, 10, 0]}
    assert r["mean"] == pytest.approx(100.0 * 19 / 24) and r["count"] == 24
