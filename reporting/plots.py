"""Pictures written to files: predictions over dataset images, PCK-vs-threshold curves, training curves."""

from __future__ import annotations

import io
import json
import os

import cv2
import numpy as np

from storage.io import write_bytes, write_image
from utils.drawing import RED, YELLOW, draw_pose
from utils.geometry import apply_affine


def save_prediction_pictures(
    dataset, indices: np.ndarray, preds: np.ndarray, outdir: str, size: int = 384
) -> list[str]:
    """For each sample: its person box from the original image with truth (red) and prediction (yellow)."""
    os.makedirs(outdir, exist_ok=True)
    ann, limbs, paths = dataset.ann, dataset.spec.limbs, []
    for i, pred in zip(indices, preds, strict=True):
        i = int(i)
        image = cv2.cvtColor(dataset.load_image(i), cv2.COLOR_RGB2BGR)
        # crop to the person box scaled to ``size`` px so that dots are visible on large photos
        s = size / (ann.box_sizes[i] * 1.2)
        m = np.array([[s, 0, size / 2 - s * ann.centers[i][0]], [0, s, size / 2 - s * ann.centers[i][1]]])
        crop = cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_AREA, borderValue=(40, 40, 40))
        draw_pose(crop, apply_affine(m, ann.joints[i]), limbs, RED, ann.annotated[i])
        draw_pose(crop, apply_affine(m, pred), limbs, YELLOW)
        name = os.path.splitext(os.path.basename(ann.image_names[i]))[0]
        paths.append(os.path.join(outdir, f"{i:05d}_{name}.png"))
        write_image(paths[-1], crop)
    return paths


def save_figure(fig, path: str) -> str:
    """Render ``fig`` in the format of ``path``'s extension and write it atomically (one line on a failed
    write, the old file left whole); returns ``path``."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format=os.path.splitext(path)[1].lstrip(".").lower() or "png", dpi=100)
    return write_bytes(path, buffer.getvalue())


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: works on servers without a display
    import matplotlib.pyplot as plt

    return plt


def plot_pck_curve(result: dict, path: str, label: str | None = None) -> str:
    """Mean PCK/PCKh (%) against the normalised-distance threshold, like the paper's Fig. 5."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(result["curve"]["thresholds"], result["curve"]["mean"], label=label or result.get("metric", ""))
    ax.set_xlabel("normalised distance threshold")
    ax.set_ylabel("detection rate (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return path


def read_log(path: str) -> list[dict]:
    """Every record of a run's log.jsonl."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def read_epoch_records(run_dir: str) -> list[dict]:
    """The per-epoch records of ``run_dir/log.jsonl`` (records without a kind are epochs)."""
    return [r for r in read_log(os.path.join(run_dir, "log.jsonl")) if r.get("kind", "epoch") == "epoch"]


def plot_training_curves(run_dir: str, path: str | None = None) -> str:
    """Losses and validation mean per epoch from ``run_dir/log.jsonl`` into ``run_dir/curves.png``; for an
    adversarial run also a third panel: ``adv_grad_ratio``, ||grad(alpha L_C + beta L_P)|| / ||grad L_MSE|| at
    G's last-stack output (log scale; epochs where it is 0 or missing are left out)."""
    plt = _pyplot()
    records = read_epoch_records(run_dir)
    epochs = [r["epoch"] for r in records]
    loss_keys = [k for k in records[0] if k.startswith("loss") or k.startswith("L_")] if records else []
    ratio = [r.get("adv_grad_ratio") for r in records]
    shown = [(e, v) for e, v in zip(epochs, ratio, strict=True) if v is not None and v > 0]
    fig, axes = plt.subplots(1, 3 if shown else 2, figsize=(15 if shown else 10, 4))
    left, right = axes[0], axes[1]
    for k in loss_keys:
        left.plot(epochs, [r.get(k, np.nan) for r in records], label=k)
    left.set_xlabel("epoch")
    left.set_yscale("log")
    left.set_title("training losses")
    left.legend(fontsize=7)
    right.plot(epochs, [r.get("val_mean", np.nan) for r in records], marker="o")
    right.set_xlabel("epoch")
    right.set_title("validation mean (%)")
    right.grid(alpha=0.3)
    if shown:
        axes[2].plot(*zip(*shown, strict=True), marker="o")
        axes[2].set_yscale("log")
        axes[2].set_xlabel("epoch")
        axes[2].set_title("adv_grad_ratio: |grad adversarial| / |grad MSE|")
        axes[2].grid(alpha=0.3, which="both")
    fig.tight_layout()
    path = path or os.path.join(run_dir, "curves.png")
    save_figure(fig, path)
    plt.close(fig)
    return path


def plot_validation_curves(runs: list[tuple[str, str, int]], path: str, metric: str) -> str:
    """Validation mean per epoch of several runs on one axis; ``runs`` = (label, run_dir, first epoch).

    The first epoch shifts a run that continues another (an adversarial G started from a supervised
    snapshot) so every curve's x axis counts the epochs G was trained in all.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, run_dir, start in runs:
        records = read_epoch_records(run_dir)
        ax.plot([start + r["epoch"] + 1 for r in records], [r.get("val_mean", np.nan) for r in records],
                marker=".", label=label)
    ax.set_xlabel("epochs of G")
    ax.set_ylabel(f"val {metric} (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return path


def plot_grad_ratio_curves(runs: list[tuple[str, str, int]], path: str) -> str:
    """``adv_grad_ratio`` per epoch of several adversarial runs on one log axis; ``runs`` as for
    ``plot_validation_curves`` (label, run_dir, first epoch). Epochs without a positive ratio are left out."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, run_dir, start in runs:
        points = [(start + r["epoch"] + 1, r["adv_grad_ratio"]) for r in read_epoch_records(run_dir)
                  if r.get("adv_grad_ratio") is not None and r["adv_grad_ratio"] > 0]
        if points:
            ax.plot(*zip(*points, strict=True), marker=".", label=label)
    ax.set_yscale("log")
    ax.set_xlabel("epochs of G")
    ax.set_ylabel("|grad adversarial| / |grad MSE|")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)  # atomically, as every other picture: a kill mid-write keeps the old one
    plt.close(fig)
    return path
