"""Inference and validation shared by both trainers, test.py and predict.py.

image -> G -> last-stack pose heatmaps (flip-averaged) -> argmax decode (heatmap px)
      -> input-crop px -> original px through the inverse crop affine -> PCK/PCKh.
"""

from __future__ import annotations

import os
from argparse import Namespace

import numpy as np
import torch
import torch.distributed as dist

from datasets import build_dataset
from datasets.base import PoseDataset
from datasets.sampler import EpochSampler
from training.checkpoint import load_checkpoint
from training.data import single_threaded_opencv, worker_init
from training.runtime import DistInfo, autocast, autocast_dtype, resolve_device
from training.scoring import score_dataset
from utils.errors import UserInputError
from utils.geometry import apply_affine, heatmap_to_input, invert_affine
from utils.heatmaps import decode_heatmaps, flip_back


def predict_heatmaps(generator: torch.nn.Module, images: torch.Tensor, flip_perm: list[int] | None,
                     device: torch.device, dtype: torch.dtype | None) -> torch.Tensor:
    """Last-stack pose heatmaps (B, J, h, w), averaged with the mirrored image's when ``flip_perm`` is given."""
    with autocast(device, dtype):
        if flip_perm is None:
            return generator(images)["pose"][-1].float()
        both = generator(torch.cat([images, images.flip(-1)]))["pose"][-1].float()  # one pass for both views
    plain, mirrored = both.chunk(2)
    return (plain + flip_back(mirrored, flip_perm)) / 2


def heatmaps_to_original(heatmaps: torch.Tensor, affine: np.ndarray, input_res: int) -> tuple[np.ndarray, np.ndarray]:
    """Decode (B, J, h, w) heatmaps and map them to original px with each sample's crop affine (B, 2, 3)."""
    coords, scores = decode_heatmaps(heatmaps)
    crop = heatmap_to_input(coords, input_res, heatmaps.shape[-1])
    return apply_affine(invert_affine(affine), crop), scores


@torch.no_grad()
def predict_loader(generator: torch.nn.Module, loader, flip_perm: list[int] | None, input_res: int,
                   device: torch.device, dtype: torch.dtype | None, channels_last: bool) -> dict[str, np.ndarray]:
    """Run G over a loader: ``{"index": (N,), "preds": (N, J, 2) original px, "scores": (N, J)}``."""
    was_training = generator.training
    generator.eval()
    index, preds, scores = [], [], []
    for batch in loader:
        images = batch["image"].to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        hm = predict_heatmaps(generator, images, flip_perm, device, dtype)
        p, s = heatmaps_to_original(hm, batch["affine"].numpy(), input_res)
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
                     limit: int | None = None) -> torch.utils.data.DataLoader:
    """Ordered loader over the first ``limit`` samples, sharded across ranks."""
    dist_info = dist_info or DistInfo()
    size = len(dataset) if limit is None else min(limit, len(dataset))
    sampler = EpochSampler(size, shuffle=False, rank=dist_info.rank, world_size=dist_info.world_size)
    if workers > 0:
        single_threaded_opencv()
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                                       pin_memory=torch.cuda.is_available(), persistent_workers=workers > 0,
                                       worker_init_fn=worker_init if workers > 0 else None)


def validate(generator: torch.nn.Module, loader, dataset: PoseDataset, cfg, device: torch.device,
             dist_info: DistInfo | None = None) -> dict:
    """Predict the loader's samples (all ranks), score them; every rank gets the same result."""
    dist_info = dist_info or DistInfo()
    flip_perm = dataset.spec.flip_permutation() if cfg["flip_test"] else None
    dtype = autocast_dtype(cfg["amp"], device)
    part = predict_loader(generator, loader, flip_perm, cfg["input_res"], device, dtype, cfg["channels_last"])
    full = gather_predictions(part, dist_info)
    result = score_dataset(full["preds"], dataset, indices=full["index"])
    return {**result, **full}


def evaluate_checkpoint(args: Namespace, split: str, outdir: str) -> dict:
    """test.py's model mode: rebuild G from the checkpoint alone, predict ``split``, score, draw pictures."""
    from models import build_generator
    from training.checkpoint import generator_from_checkpoint
    from utils.visualize import plot_pck_curve, save_prediction_pictures

    ckpt = load_checkpoint(args.checkpoint)
    cfg, generator = generator_from_checkpoint(ckpt, build_generator, amp=args.amp)
    device = resolve_device(args.device)
    dataset = build_dataset(args.dataset, args.path, split, cfg, train=False)
    if dataset.spec.num_joints != ckpt["model_args"]["num_joints"]:
        raise UserInputError(
            f"--checkpoint: model predicts {ckpt['model_args']['num_joints']} joints but dataset "
            f"'{args.dataset}' has {dataset.spec.num_joints}"
        )
    generator = generator.to(device)
    if cfg["channels_last"]:
        generator = generator.to(memory_format=torch.channels_last)
    loader = make_eval_loader(dataset, args.batch_size, args.workers, limit=args.max_samples)
    run_cfg = {**cfg, "flip_test": not args.no_flip}
    result = validate(generator, loader, dataset, run_cfg, device)
    if args.alpha is not None:
        result.update(score_dataset(result["preds"], dataset, args.alpha, indices=result["index"]))
    save_prediction_pictures(dataset, result["index"][: args.num_pictures], result["preds"][: args.num_pictures],
                             os.path.join(outdir, "pictures"))
    plot_pck_curve(result, os.path.join(outdir, "pck_curve.png"))
    result.pop("index")
    return result
