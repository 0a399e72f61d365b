"""Datasets: each one's files -> ``Annotations`` in original-image px, and one sample pipeline for all.

``base``: the pipeline (affine crop, normalisation, heatmaps) and ``eval_crop``; ``mpii``, ``lsp``
(LSP, LSPET), ``synthetic``, ``prepared`` (person-centred crops written once, read as ``mpii_prepared`` or
``lsp_prepared``): the loaders; ``photos``: generated MPII-like photos for the pipeline benchmark;
``skeleton``: joint names, flips, limbs, metric groups;
``sampler``: the epoch-seeded sharded sampler. Here: the name -> class table and ``build_dataset``,
which turns a config into constructor arguments."""

from __future__ import annotations

from config import Config
from datasets.base import Augmentation, PoseDataset
from datasets.lsp import LSPDataset, LSPETDataset
from datasets.mpii import MPIIDataset
from datasets.prepared import PreparedLSP, PreparedMPII
from datasets.synthetic import SyntheticDataset
from utils.errors import UserInputError

DATASETS: dict[str, type[PoseDataset]] = {
    "mpii": MPIIDataset,
    "lsp": LSPDataset,
    "lspet": LSPETDataset,
    "synthetic": SyntheticDataset,
    "mpii_prepared": PreparedMPII,  # person-centred crops written by scripts/prepare_crops.py
    "lsp_prepared": PreparedLSP,  # the same of LSP or LSPET
}

# The split each dataset is validated / tested on by default.
DEFAULT_VAL_SPLIT = {"mpii": "valid", "lsp": "test", "lspet": "val", "synthetic": "val",
                     "mpii_prepared": "valid", "lsp_prepared": "val"}


def dataset_class(name: str) -> type[PoseDataset]:
    """Look up a dataset class; an unknown name raises with the list of valid ones."""
    if name not in DATASETS:
        raise UserInputError(f"--dataset: unknown dataset '{name}'; valid: {', '.join(DATASETS)}")
    return DATASETS[name]


def build_dataset(name: str, path: str | None, split: str, cfg: Config, train: bool, flag: str = "--split"
                  ) -> PoseDataset:
    """Dataset ``name`` at ``path`` (unused for synthetic); ``train`` turns augmentation on. An unknown or
    empty split is refused with one line naming ``flag`` (the flag that chose ``split``)."""
    cls = dataset_class(name)
    pipeline = {
        "input_res": cfg.input_res,
        "output_res": cfg.output_res,
        "sigma": cfg.sigma,
        "mean": cfg.mean,
        "std": cfg.std,
        "seed": cfg.seed,
        "reduced_decode": train and cfg.reduced_decode,
        "augmentation": Augmentation(
            rotation=cfg.rotation,
            scale_min=cfg.scale_min,
            scale_max=cfg.scale_max,
            flip=cfg.flip,
            color_jitter=cfg.color_jitter,
        )
        if train
        else None,
    }
    if name == "synthetic":
        size = cfg.synthetic_train_size if split == "train" else cfg.synthetic_val_size
        ds = cls(split=split, size=size, base_seed=cfg.synthetic_seed, canvas=cfg.synthetic_canvas,
                 box_margin=cfg.box_margin, split_flag=flag, **pipeline)
    elif name in ("mpii", "mpii_prepared", "lsp_prepared"):
        ds = cls(root=_need_path(path, name), split=split, split_flag=flag, **pipeline)
    else:
        ds = cls(root=_need_path(path, name), split=split, box_margin=cfg.box_margin, split_flag=flag, **pipeline)
    if len(ds) == 0:
        raise UserInputError(f"{flag}: the '{split}' split of {name}{f' at {path}' if path else ''} holds no "
                             f"samples; choose another split or a dataset with more samples")
    if cfg.cache_images:
        ds.cache_images()
    return ds


def check_image_files(dataset: PoseDataset, limit: int | None, flag: str, allow: bool = False) -> int:
    """Check that the image file of each of the first ``limit`` samples exists and is a readable regular file,
    before any work; an unreadable one is an error naming the first of them and the flag that chose the split,
    or with ``allow`` (``--skip_bad_images``) counted. Returns how many cannot be read."""
    bad = dataset.unreadable_images(limit)
    if bad and not allow:
        count = len(dataset) if limit is None else min(limit, len(dataset))
        skip = "; pass --skip_bad_images to train without them" if flag == "--train_split" else ""
        raise UserInputError(f"{bad[0]}; {len(bad)} of the {count} images of the '{dataset.split}' split "
                             f"({flag}) cannot be read, found before any work{skip}")
    return len(bad)


def _need_path(path: str | None, name: str) -> str:
    if not path:
        raise UserInputError(f"--path: dataset '{name}' needs its directory")
    return path
