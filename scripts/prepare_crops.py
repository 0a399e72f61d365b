"""Write person-centred crops of a dataset once, so that training decodes no photo (datasets/prepared.py).

    python -m scripts.prepare_crops --dataset mpii --path data/mpii --out data/mpii-crops
    python train_supervised.py --dataset mpii_prepared --path data/mpii-crops --config config.newell8 ...

Each split becomes <out>/<split>.npy (uint8 crops, 440 x 440 px for 256 px input: about 580 KB per person,
memory-mapped by the DataLoader workers) and <split>.h5 (annotations in crop px). The crops hold the
config's largest zoom and rotation (--config, --set); training refuses a config that asks for more.
A non-empty --out is refused unless --overwrite, which replaces only the files of the splits written here.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from tqdm import tqdm

from cli.common import add_overwrite_flag
from config import load_config, parse_overrides, preset_name
from datasets import DEFAULT_VAL_SPLIT, build_dataset, check_image_files
from datasets.prepared import (
    PrepareCrops,
    crop_attrs,
    prepared_annotations,
    prepared_side,
    write_annotations,
)
from runtime.system import single_threaded_opencv, worker_init
from storage.io import atomic_output, check_replaceable, ensure_writable_dir, replacing_note
from training.data import usable_cores
from utils.errors import UserInputError, exit_on_user_error, refuse_empty

PREPARED_NAME = {"mpii": "mpii_prepared", "lsp": "lsp_prepared", "lspet": "lsp_prepared",
                 "synthetic": "mpii_prepared"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True, help=f"one of: {', '.join(PREPARED_NAME)}")
    p.add_argument("--path", default=None, help="the dataset's folder (not needed for synthetic)")
    p.add_argument("--out", required=True, help="folder to write <split>.npy and <split>.h5 in")
    p.add_argument("--splits", default=None, help="comma-separated splits (default: train and the validation split)")
    p.add_argument("--config", default="config.default_config",
                   help="preset whose input_res, scale_max and rotation the crops must hold")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config entry")
    p.add_argument("--workers", type=int, default=None, help="processes that decode and warp (default: cores - 1)")
    add_overwrite_flag(p, "the prepared splits already in --out")
    return p.parse_args(argv)


def planned_outputs(out: str, splits: list[str]) -> list[str]:
    """The files this run writes."""
    return [os.path.join(out, f"{split}{ext}") for split in splits for ext in (".npy", ".h5")]


def check_out(args: argparse.Namespace, splits: list[str]) -> list[str]:
    """Refuse a non-empty --out without --overwrite, and any output that is one of the dataset's own files;
    returns the earlier files that --overwrite replaces, to be named before they are."""
    if os.path.isdir(args.out) and os.listdir(args.out) and not args.overwrite:
        raise UserInputError(f"--out: {args.out} is not empty; pass --overwrite to replace the prepared splits in "
                             f"it (other files are left alone), or choose another --out")
    sources = [os.path.join("annot", f"{split}.h5") for split in splits] + ["joints.mat"]  # MPII, LSP layouts
    inputs = [os.path.join(args.path, name) for name in sources] if args.path else []
    return check_replaceable(planned_outputs(args.out, splits), inputs, "--out", args.overwrite)


def write_split(dataset, out: str, cfg, workers: int) -> tuple[str, int]:
    """Crops and annotations of one split; returns the crop file and its size in bytes."""
    side = prepared_side(cfg.input_res, cfg.scale_max, cfg.rotation)
    crops_path, ann_path = (os.path.join(out, f"{dataset.split}{ext}") for ext in (".npy", ".h5"))
    loader = torch.utils.data.DataLoader(PrepareCrops(dataset, cfg.input_res, side), batch_size=None,
                                         num_workers=workers, worker_init_fn=worker_init if workers else None,
                                         prefetch_factor=8 if workers else None)
    affines = np.empty((len(dataset), 2, 3))
    with atomic_output(crops_path) as tmp:
        crops = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(dataset), side, side, 3))
        for i, (crop, affine) in enumerate(tqdm(loader, desc=dataset.split, leave=False)):
            crops[i], affines[i] = crop.numpy(), affine.numpy()
        crops.flush()
        del crops
    root = getattr(dataset, "root", None)  # a generated dataset (synthetic) has no folder
    source = f"{os.path.abspath(root) if root else 'synthetic'}:{dataset.split}"
    attrs = crop_attrs(dataset.spec, cfg.input_res, side, cfg.scale_max, cfg.rotation, dataset.ann.labelled, source,
                       dataset.file_origin)
    with atomic_output(ann_path) as tmp:
        write_annotations(tmp, prepared_annotations(dataset.ann, affines, cfg.input_res), attrs)
    return crops_path, os.path.getsize(crops_path)


@exit_on_user_error
def main(argv: list[str] | None = None) -> dict[str, str]:
    """Prepare every split; returns split -> crop file."""
    args = refuse_empty(parse_args(argv))
    if args.dataset not in PREPARED_NAME:
        raise UserInputError(f"--dataset: cannot prepare '{args.dataset}'; valid: {', '.join(PREPARED_NAME)}")
    cfg = load_config(preset_name(args.config), parse_overrides(args.set))
    splits = args.splits.split(",") if args.splits else ["train", DEFAULT_VAL_SPLIT[args.dataset]]
    replaced = check_out(args, splits)
    datasets = [build_dataset(args.dataset, args.path, split, cfg, train=False, flag="--splits") for split in splits]
    for ds in datasets:
        check_image_files(ds, None, "--splits")
    workers = max(1, usable_cores() - 1) if args.workers is None else args.workers
    if workers < 0:
        raise UserInputError(f"--workers: {workers}; expected 0 (this process) or more")
    if workers:
        single_threaded_opencv()
    ensure_writable_dir(args.out, "--out")
    if replaced:
        print(replacing_note(replaced))
    written = {}
    for ds in datasets:
        start = time.perf_counter()
        path, size = write_split(ds, args.out, cfg, workers)
        print(f"{ds.split}: {len(ds)} people -> {path} ({size / 2**30:.2f} GiB, {time.perf_counter() - start:.0f} s)")
        written[ds.split] = path
    print(f"train on them with --dataset {PREPARED_NAME[args.dataset]} --path {args.out}")
    return written


if __name__ == "__main__":
    main()
