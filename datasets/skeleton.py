"""Joint facts of each dataset family, kept as data: names, flip pairs, metric groups, limbs.

Every transform, loss and evaluator receives one of these specs instead of re-typing indices.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class JointSpec:
    """Joint layout of a dataset and how its metric groups the joints."""

    names: tuple[str, ...]  # joint names in annotation order
    flip_pairs: tuple[tuple[int, int], ...]  # (left, right) index pairs swapped by a horizontal flip
    # Metric table rows: (row name, joint indices); a row's rate is the unweighted mean of its joints' rates.
    groups: tuple[tuple[str, tuple[int, ...]], ...]
    mean_joints: tuple[int, ...]  # joints that enter the count-weighted Mean
    limbs: tuple[tuple[int, int], ...]  # skeleton edges for drawing
    metric: str  # "PCKh" (reference = head size) or "PCK" (reference = torso diameter)
    alpha: float  # the standard threshold of the metric
    auc_max: float  # the AUC integrates the Mean-vs-threshold curve over thresholds [0, auc_max]
    # Joints averaged (unweighted) into the official MATLAB evaluation's Head row; () where the dataset's
    # standard evaluation has no Head row other than ``groups``' own.
    official_head: tuple[int, ...] = ()

    @property
    def num_joints(self) -> int:
        """Number of joints J."""
        return len(self.names)

    def flip_permutation(self) -> list[int]:
        """Index map ``perm`` such that ``flipped[:, j] = original[:, perm[j]]`` swaps left and right."""
        perm = list(range(self.num_joints))
        for a, b in self.flip_pairs:
            perm[a], perm[b] = b, a
        return perm


MPII = JointSpec(
    names=(
        "r_ankle", "r_knee", "r_hip", "l_hip", "l_knee", "l_ankle", "pelvis", "thorax",
        "upper_neck", "head_top", "r_wrist", "r_elbow", "r_shoulder", "l_shoulder", "l_elbow", "l_wrist",
    ),
    flip_pairs=((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13)),
    # Head = head top alone, as bearpaw/pytorch-pose and HRNet/mmpose print it; the official MATLAB
    # evaluation's Head (upper neck and head top) is ``official_head``.
    groups=(
        ("Head", (9,)),
        ("Shoulder", (12, 13)),
        ("Elbow", (11, 14)),
        ("Wrist", (10, 15)),
        ("Hip", (2, 3)),
        ("Knee", (1, 4)),
        ("Ankle", (0, 5)),
    ),
    # The MPII convention leaves pelvis and thorax out of the mean: they sit close to the torso
    # centre that the person box is built from, so they are near-trivial.
    mean_joints=(0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13, 14, 15),
    limbs=(
        (0, 1), (1, 2), (2, 6), (6, 3), (3, 4), (4, 5), (6, 7), (7, 8), (8, 9),
        (7, 12), (12, 11), (11, 10), (7, 13), (13, 14), (14, 15),
    ),
    metric="PCKh",
    alpha=0.5,
    auc_max=0.5,  # the official evaluatePCKh.m's range 0:0.01:0.5
    official_head=(8, 9),
)

LSP = JointSpec(
    names=(
        "r_ankle", "r_knee", "r_hip", "l_hip", "l_knee", "l_ankle", "r_wrist", "r_elbow",
        "r_shoulder", "l_shoulder", "l_elbow", "l_wrist", "neck", "head_top",
    ),
    flip_pairs=((0, 5), (1, 4), (2, 3), (6, 11), (7, 10), (8, 9)),
    # Head = neck and head top, unweighted: the LSP evaluation code in use (bearpaw/eval_pose eval_pck.m)
    # pairs them like a left/right pair (symmetry_joint_id 13 <-> 14), so every row is a pair and the
    # unweighted Mean of the 14 joints equals the mean of the 7 rows.
    groups=(
        ("Head", (12, 13)),
        ("Shoulder", (8, 9)),
        ("Elbow", (7, 10)),
        ("Wrist", (6, 11)),
        ("Hip", (2, 3)),
        ("Knee", (1, 4)),
        ("Ankle", (0, 5)),
    ),
    mean_joints=tuple(range(14)),
    limbs=(
        (0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (2, 8), (3, 9), (8, 9), (6, 7), (7, 8),
        (9, 10), (10, 11), (12, 13), (8, 12), (9, 12),
    ),
    metric="PCK",
    alpha=0.2,
    auc_max=0.2,  # eval_pose's range 0:0.01:0.2
)

# Torso diagonals used as PCK's reference length on LSP: (left shoulder, right hip), then the
# other diagonal (right shoulder, left hip) when a joint of the first pair is not annotated.
LSP_TORSO_DIAGONALS = ((9, 2), (8, 3))
