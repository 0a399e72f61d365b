"""PCK-family metrics: per-joint hits, grouped tables, threshold curves, visible/occluded split.

All coordinates are in one common frame (normally original-image px); reference lengths are in
that frame too. Percentages are 0-100. These functions only compute; callers print.
"""

from __future__ import annotations

import numpy as np

from datasets.skeleton import JointSpec


def normalized_distances(pred: np.ndarray, gt: np.ndarray, ref_length: np.ndarray) -> np.ndarray:
    """Euclidean error of each joint divided by its sample's reference length: (N, J, 2) x2, (N,) -> (N, J)."""
    err = np.linalg.norm(np.asarray(pred, np.float64) - np.asarray(gt, np.float64), axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return err / np.asarray(ref_length, np.float64)[:, None]


def counted_joints(annotated: np.ndarray, ref_length: np.ndarray) -> np.ndarray:
    """Joints that enter the metric: annotated, in a sample whose reference length is defined and > 0."""
    ref = np.asarray(ref_length, np.float64)
    return np.asarray(annotated, bool) & (np.isfinite(ref) & (ref > 0))[:, None]


def _group_rates(hits: np.ndarray, counted: np.ndarray, spec: JointSpec) -> tuple[dict[str, float], float, int]:
    per_group = {}
    for name, idx in spec.groups:
        n = counted[:, idx].sum()
        per_group[name] = float(100.0 * hits[:, idx].sum() / n) if n else float("nan")
    mj = list(spec.mean_joints)
    n_mean = int(counted[:, mj].sum())
    mean = float(100.0 * hits[:, mj].sum() / n_mean) if n_mean else float("nan")
    return per_group, mean, n_mean


def pck_table(dist: np.ndarray, counted: np.ndarray, spec: JointSpec, alpha: float) -> dict:
    """Per-group rates and the count-weighted Mean at threshold ``alpha``.

    dist, counted: (N, J). Returns ``{"per_joint": {group: %}, "mean": %, "count": joints in Mean}``.
    """
    hits = (dist <= alpha) & counted
    per_group, mean, n = _group_rates(hits, counted, spec)
    return {"per_joint": per_group, "mean": mean, "count": n}


def per_sample_hits(dist: np.ndarray, counted: np.ndarray, spec: JointSpec, alpha: float) -> dict[str, list[int]]:
    """Per sample, over the Mean joints: joints within ``alpha`` and joints counted, (N, J) -> two lists of N ints.
    Summed over samples they give the Mean; a bootstrap over images resamples them (reporting.records)."""
    mj = list(spec.mean_joints)
    hits = ((dist[:, mj] <= alpha) & counted[:, mj]).sum(1)
    return {"hits": hits.astype(int).tolist(), "counted": counted[:, mj].sum(1).astype(int).tolist()}


def pck_curve(dist: np.ndarray, counted: np.ndarray, spec: JointSpec, thresholds: np.ndarray) -> np.ndarray:
    """Mean rate (%) at each threshold: (T,) for the PCK-vs-threshold plot."""
    mj = list(spec.mean_joints)
    d, c = dist[:, mj][counted[:, mj]], counted[:, mj].sum()
    if c == 0:
        return np.full(len(thresholds), np.nan)
    return np.array([100.0 * (d <= t).sum() / c for t in thresholds])


def visibility_breakdown(
    dist: np.ndarray, counted: np.ndarray, visible: np.ndarray, spec: JointSpec, alpha: float
) -> dict:
    """Mean rate over the Mean joints split into visible and annotated-but-occluded joints."""
    out = {}
    for name, sel in (("visible", visible), ("occluded", ~np.asarray(visible, bool))):
        sub = counted & sel
        out[name] = pck_table(dist, sub, spec, alpha)["mean"]
        out[f"{name}_count"] = int(sub[:, list(spec.mean_joints)].sum())
    return out


def evaluate(
    pred: np.ndarray,
    gt: np.ndarray,
    annotated: np.ndarray,
    visible: np.ndarray,
    ref_length: np.ndarray,
    spec: JointSpec,
    alpha: float | None = None,
    curve_max: float | None = None,
    curve_steps: int = 21,
) -> dict:
    """Full evaluation record: table at ``alpha`` (default: the spec's), visible/occluded split, curve, and the
    per-sample hits behind the Mean (``per_sample``, in the order of ``pred``)."""
    alpha = spec.alpha if alpha is None else alpha
    dist = normalized_distances(pred, gt, ref_length)
    counted = counted_joints(annotated, ref_length)
    result = pck_table(dist, counted, spec, alpha)
    result["metric"] = f"{spec.metric}@{alpha:g}"
    result["visibility"] = visibility_breakdown(dist, counted, visible, spec, alpha)
    result["per_sample"] = per_sample_hits(dist, counted, spec, alpha)
    thresholds = np.linspace(0.0, curve_max if curve_max is not None else 2 * alpha, curve_steps)
    result["curve"] = {"thresholds": thresholds.tolist(), "mean": pck_curve(dist, counted, spec, thresholds).tolist()}
    return result


def format_table(result: dict) -> str:
    """Two-line text table: group names and Mean, then the percentages."""
    names = list(result["per_joint"]) + ["Mean"]
    values = list(result["per_joint"].values()) + [result["mean"]]
    head = f"{result.get('metric', ''):<10}" + "".join(f"{n:>9}" for n in names)
    row = f"{'':<10}" + "".join(f"{v:>9.2f}" for v in values)
    return head + "\n" + row
