"""PCK-family metrics: per-joint rates, grouped tables, threshold curves, AUC, visible/occluded split.

All coordinates are in one common frame (normally original-image px); reference lengths are in
that frame too. Percentages are 0-100. These functions only compute; callers print.

Conventions (README "Metric conventions"). A joint is correct when its distance over the sample's
reference length is ``<= alpha`` (as the official MATLAB code, bearpaw/pytorch-pose and HRNet/mmpose all
test). A joint's rate is hits / counted over its counted entries. The figures:

- ``per_joint``: one row per metric group, the *unweighted* mean of its joints' rates (left and right
  count equally however many of each are annotated), as all three conventions print their tables.
- ``mean``: the headline, *count-weighted* over every counted entry of the Mean joints (pooled), which
  is the official MATLAB Total and HRNet/mmpose's Mean.
- ``mean_unweighted``: the unweighted mean of the Mean joints' rates, bearpaw/pytorch-pose's Mean.
- ``mean_at_0.1``: the count-weighted Mean at threshold 0.1 (HRNet/mmpose's "Mean@0.1"), for every dataset.
- ``auc``: area under the count-weighted Mean-vs-threshold curve over thresholds [0, spec.auc_max]
  (0-0.5 for PCKh, 0-0.2 for PCK), sampled every 0.01 (51 or 21 thresholds), trapezoid rule, divided by
  auc_max, so 0-100: the AUC of the official evaluatePCKh.m and of bearpaw/eval_pose for LSP.
- ``head_official``: where the spec names it, the official MATLAB Head (MPII: upper neck and head top).
- ``joints``: every joint's rate by name.
"""

from __future__ import annotations

import numpy as np

from datasets.skeleton import JointSpec

STRICT_ALPHA = 0.1  # threshold of ``mean_at_0.1`` (HRNet/mmpose's Mean@0.1); LSP/LSPET use it as well
AUC_STEP = 0.01  # threshold spacing of the AUC: the official evaluatePCKh.m's and eval_pose's ranges


def normalized_distances(pred: np.ndarray, gt: np.ndarray, ref_length: np.ndarray) -> np.ndarray:
    """Euclidean error of each joint divided by its sample's reference length: (N, J, 2) x2, (N,) -> (N, J)."""
    err = np.linalg.norm(np.asarray(pred, np.float64) - np.asarray(gt, np.float64), axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return err / np.asarray(ref_length, np.float64)[:, None]


def counted_joints(annotated: np.ndarray, ref_length: np.ndarray) -> np.ndarray:
    """Joints that enter the metric: annotated, in a sample whose reference length is defined and > 0."""
    ref = np.asarray(ref_length, np.float64)
    return np.asarray(annotated, bool) & (np.isfinite(ref) & (ref > 0))[:, None]


def joint_rates(hits: np.ndarray, counted: np.ndarray) -> np.ndarray:
    """Rate (%) of each joint over its counted entries: (N, J) x2 -> (J,), NaN for a joint never counted."""
    n = counted.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n > 0, 100.0 * (hits & counted).sum(axis=0) / n, np.nan)


def unweighted_mean(rates: np.ndarray, joints: tuple[int, ...] | list[int]) -> float:
    """Unweighted mean of the defined rates among ``joints`` (NaN if none is defined)."""
    sel = np.asarray(rates, np.float64)[list(joints)]
    sel = sel[np.isfinite(sel)]
    return float(sel.mean()) if sel.size else float("nan")


def weighted_mean(hits: np.ndarray, counted: np.ndarray, joints: tuple[int, ...] | list[int]) -> float:
    """Rate (%) pooled over every counted entry of ``joints``: joints with more annotations weigh more."""
    j = list(joints)
    n = counted[:, j].sum()
    return float(100.0 * (hits & counted)[:, j].sum() / n) if n else float("nan")


def pck_table(dist: np.ndarray, counted: np.ndarray, spec: JointSpec, alpha: float) -> dict:
    """The table at threshold ``alpha``; dist, counted: (N, J).

    Returns ``per_joint`` {group: unweighted mean of its joints' rates}, ``mean`` (count-weighted over the
    Mean joints), ``count`` (entries in it), ``mean_unweighted``, ``joints`` {name: rate} and, where the spec
    has one, ``head_official``.
    """
    hits = (dist <= alpha) & counted
    rates = joint_rates(hits, counted)
    table = {
        "per_joint": {name: unweighted_mean(rates, idx) for name, idx in spec.groups},
        "mean": weighted_mean(hits, counted, spec.mean_joints),
        "count": int(counted[:, list(spec.mean_joints)].sum()),
        "mean_unweighted": unweighted_mean(rates, spec.mean_joints),
    }
    if spec.official_head:
        table["head_official"] = unweighted_mean(rates, spec.official_head)
    table["joints"] = {name: float(r) for name, r in zip(spec.names, rates, strict=True)}
    return table


def per_sample_hits(dist: np.ndarray, counted: np.ndarray, spec: JointSpec, alpha: float) -> dict[str, list[int]]:
    """Per sample, over the Mean joints: joints within ``alpha`` and joints counted, (N, J) -> two lists of N ints.
    Summed over samples they give the Mean; a bootstrap over images resamples them (reporting.records)."""
    mj = list(spec.mean_joints)
    hits = ((dist[:, mj] <= alpha) & counted[:, mj]).sum(1)
    return {"hits": hits.astype(int).tolist(), "counted": counted[:, mj].sum(1).astype(int).tolist()}


def pck_curve(dist: np.ndarray, counted: np.ndarray, spec: JointSpec, thresholds: np.ndarray) -> np.ndarray:
    """Count-weighted Mean rate (%) at each threshold: (T,) for the PCK-vs-threshold plot and the AUC."""
    mj = list(spec.mean_joints)
    d, c = dist[:, mj][counted[:, mj]], counted[:, mj].sum()
    if c == 0:
        return np.full(len(thresholds), np.nan)
    return np.array([100.0 * (d <= t).sum() / c for t in thresholds])


def auc_thresholds(spec: JointSpec) -> np.ndarray:
    """The AUC's thresholds: 0, 0.01, ..., spec.auc_max (51 for PCKh's 0.5, 21 for PCK's 0.2)."""
    return np.linspace(0.0, spec.auc_max, int(round(spec.auc_max / AUC_STEP)) + 1)


def pck_auc(dist: np.ndarray, counted: np.ndarray, spec: JointSpec) -> float:
    """Area under the count-weighted Mean curve over [0, spec.auc_max] (trapezoid rule on
    ``auc_thresholds``) divided by auc_max: 0-100, 100 only if every joint is exact."""
    curve = pck_curve(dist, counted, spec, auc_thresholds(spec))
    return float(0.5 * (curve[1:] + curve[:-1]).mean())  # uniform spacing: trapezoid area / range


def visibility_breakdown(
    dist: np.ndarray, counted: np.ndarray, visible: np.ndarray, spec: JointSpec, alpha: float
) -> dict:
    """Count-weighted Mean over the Mean joints split into visible and annotated-but-occluded joints."""
    hits = (dist <= alpha) & counted
    out = {}
    for name, sel in (("visible", visible), ("occluded", ~np.asarray(visible, bool))):
        sub = counted & sel
        out[name] = weighted_mean(hits, sub, spec.mean_joints)
        out[f"{name}_count"] = int(sub[:, list(spec.mean_joints)].sum())
    return out


def pck_metrics(
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
    """Full evaluation record: table at ``alpha`` (default: the spec's), ``mean_at_0.1``, ``auc`` (both
    independent of ``alpha``), visible/occluded split, the plotted curve (0 to ``curve_max``, default
    2 alpha) and the per-sample hits behind the Mean (``per_sample``, in the order of ``pred``).
    pred, gt: (N, J, 2); annotated, visible: (N, J); ref_length: (N,)."""
    alpha = spec.alpha if alpha is None else alpha
    dist = normalized_distances(pred, gt, ref_length)
    counted = counted_joints(annotated, ref_length)
    result = {"metric": f"{spec.metric}@{alpha:g}", **pck_table(dist, counted, spec, alpha)}
    result["mean_at_0.1"] = weighted_mean((dist <= STRICT_ALPHA) & counted, counted, spec.mean_joints)
    result["auc"] = pck_auc(dist, counted, spec)
    result["auc_range"] = [0.0, spec.auc_max]
    result["visibility"] = visibility_breakdown(dist, counted, visible, spec, alpha)
    result["per_sample"] = per_sample_hits(dist, counted, spec, alpha)
    thresholds = np.linspace(0.0, curve_max if curve_max is not None else 2 * alpha, curve_steps)
    result["curve"] = {"thresholds": thresholds.tolist(), "mean": pck_curve(dist, counted, spec, thresholds).tolist()}
    return result


def _rows(label: str, named: dict[str, float], per_line: int) -> list[str]:
    """Name row over value row, ``per_line`` columns at a time, the first pair labelled."""
    cells, lines = [(n, v, max(9, len(n) + 1)) for n, v in named.items()], []
    for start in range(0, len(cells), per_line):
        chunk = cells[start:start + per_line]
        lines.append(f"{label if start == 0 else '':<10}" + "".join(f"{n:>{w}}" for n, _, w in chunk))
        lines.append(f"{'':<10}" + "".join(f"{v:>{w}.2f}" for _, v, w in chunk))
    return lines


def format_table(result: dict) -> str:
    """Text table: groups and the headline Mean; the other conventions' figures; every joint by name.

    Figures absent from ``result`` (older records) are left out."""
    lines = _rows(result.get("metric", ""), {**result["per_joint"], "Mean": result["mean"]}, per_line=8)
    extra = {"Mean (unweighted)": result.get("mean_unweighted"), "Mean@0.1": result.get("mean_at_0.1")}
    if "auc_range" in result:
        extra[f"AUC 0-{result['auc_range'][1]:g}"] = result.get("auc")
    extra["Head (official)"] = result.get("head_official")
    extra = {k: v for k, v in extra.items() if v is not None}
    if extra:
        lines += _rows("", extra, per_line=8)
    if "joints" in result:
        lines += _rows("per joint", result["joints"], per_line=8)
    return "\n".join(lines)
