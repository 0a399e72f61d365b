"""Evaluating G on a dataset split, shared by training's validation and test.py.

split -> ordered (sharded) loader -> joints in original px (``inference.predict``) -> gathered from every rank
      -> scored against the split's labels (PCK/PCKh, ``inference.scoring``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from checkpoint import LOADED_FROM
from config import Config
from datasets import build_dataset, check_image_files
from datasets.base import PoseDataset
from datasets.sampler import EpochSampler
from datasets.skeleton import JointSpec
from inference.predict import heatmaps_to_original, predict_heatmaps
from inference.scoring import score_predictions
from inference.weights import load_generator
from runtime.device import autocast_dtype, place_images, precision_name
from runtime.distributed import DistInfo
from runtime.system import WorkerLoader, single_threaded_opencv, worker_init
from utils.errors import UserInputError


@dataclass(frozen=True)
class InferenceSettings:
    """How G is run at test time."""

    input_res: int  # network input side (px)
    flip_perm: list[int] | None  # joint permutation of the mirrored image; None = no flip test
    dtype: torch.dtype | None  # autocast dtype, None = fp32
    channels_last: bool


@torch.no_grad()
def predict_loader(generator: torch.nn.Module, loader, settings: InferenceSettings,
                   device: torch.device) -> dict[str, np.ndarray]:
    """Run G over a loader: ``{"index": (N,), "preds": (N, J, 2) original px, "scores": (N, J)}``."""
    was_training = generator.training
    generator.eval()
    index, preds, scores = [], [], []
    for batch in loader:
        images = place_images(batch["image"], device, settings.channels_last)
        hm = predict_heatmaps(generator, images, settings.flip_perm, device, settings.dtype)
        p, s = heatmaps_to_original(hm, batch["affine"].numpy(), settings.input_res)
        index.append(batch["index"].numpy())
        preds.append(p)
        scores.append(s)
    generator.train(was_training)
    return {"index": np.concatenate(index), "preds": np.concatenate(preds), "scores": np.concatenate(scores)}


def gather_predictions(part: dict[str, np.ndarray], dist_info: DistInfo) -> dict[str, np.ndarray]:
    """Collect every rank's shard, drop the sampler's wrap-around duplicates, sort by sample index."""
    if dist_info.world_size > 1:
        shards: list = [None] * dist_info.world_size
        dist.all_gather_object(shards, part)
        part = {k: np.concatenate([s[k] for s in shards]) for k in part}
    _, first = np.unique(part["index"], return_index=True)
    return {k: v[first] for k, v in part.items()}


def make_eval_loader(dataset: PoseDataset, batch_size: int, workers: int, dist_info: DistInfo | None = None,
                     limit: int | None = None, pin_memory: bool = False) -> torch.utils.data.DataLoader:
    """Ordered loader over the first ``limit`` samples, sharded across ranks; ``pin_memory`` for a CUDA model.

    Workers are started per pass and end with it (not persistent): validation runs once an epoch, and a
    finished pass leaves no worker processes behind to be shut down."""
    dist_info = dist_info or DistInfo()
    size = len(dataset) if limit is None else min(limit, len(dataset))
    sampler = EpochSampler(size, shuffle=False, rank=dist_info.rank, world_size=dist_info.world_size)
    if workers > 0:
        single_threaded_opencv()
    return WorkerLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                        pin_memory=pin_memory, worker_init_fn=worker_init if workers > 0 else None)


def evaluate(generator: torch.nn.Module, loader, dataset: PoseDataset, settings: InferenceSettings,
             device: torch.device, dist_info: DistInfo | None = None, alpha: float | None = None) -> dict:
    """Predict the loader's samples (all ranks), score them at ``alpha`` (default: the dataset's metric);
    every rank gets the same result, with ``index``, ``preds`` and ``scores`` of the samples beside the metrics.
    Training's validation and test.py (``evaluate_checkpoint``) both run this."""
    part = predict_loader(generator, loader, settings, device)
    full = gather_predictions(part, dist_info or DistInfo())
    result = score_predictions(full["preds"], dataset, alpha, indices=full["index"])
    return {**result, **full}


def inference_settings(cfg: Config, spec: JointSpec, device: torch.device, flip: bool) -> InferenceSettings:
    """A run's test-time settings: its input size, precision and memory layout; flip test as asked."""
    return InferenceSettings(cfg.input_res, spec.flip_permutation() if flip else None,
                             autocast_dtype(cfg.amp, device), cfg.channels_last)


def evaluate_checkpoint(checkpoint: str, dataset_name: str, data_path: str | None, split: str, device: str = "auto",
                        flip: bool = True, amp: str | None = None, batch_size: int = 32, workers: int = 2,
                        max_samples: int | None = None, alpha: float | None = None,
                        trust: bool = False) -> tuple[dict, PoseDataset]:
    """test.py's model mode: rebuild G from the checkpoint alone, predict the split's samples, score them.

    Returns (result, dataset): the metrics with ``index``, ``preds`` (original px) and ``scores`` of the
    first ``max_samples`` samples, and how they were computed (``device``, ``precision``, ``flip_test``, and the
    ``checkpoint`` file read: a run directory's newest complete one); for
    a split without labels (``dataset.ann.labelled`` False, MPII's test split) only ``index``, ``preds`` and
    ``scores`` besides those."""
    loaded = load_generator(checkpoint, device, amp, trust)
    dataset = build_dataset(dataset_name, data_path, split, loaded.cfg, train=False)
    joints = loaded.ckpt["model_args"]["num_joints"]
    if dataset.spec.num_joints != joints:
        raise UserInputError(f"--checkpoint: model predicts {joints} joints but dataset '{dataset_name}' has "
                             f"{dataset.spec.num_joints}")
    check_image_files(dataset, max_samples, "--split")  # before the first batch, not in its middle
    loader = make_eval_loader(dataset, batch_size, workers, limit=max_samples,
                              pin_memory=loaded.device.type == "cuda")
    settings = inference_settings(loaded.cfg, dataset.spec, loaded.device, flip)
    how = {"device": str(loaded.device), "precision": precision_name(settings.dtype, loaded.device), "flip_test": flip,
           "checkpoint": loaded.ckpt[LOADED_FROM]}
    if not dataset.ann.labelled:  # nothing to score against: predictions only
        part = predict_loader(loaded.generator, loader, settings, loaded.device)
        return {**gather_predictions(part, DistInfo()), **how}, dataset
    result = evaluate(loaded.generator, loader, dataset, settings, loaded.device, alpha=alpha)
    return {**result, **how}, dataset
