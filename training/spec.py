"""What a run reads and writes, and how it treats faults: everything a run needs besides the config."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RunSpec:
    """The non-config part of a run (cli/training.py makes it from the trainers' flags)."""

    dataset: str
    path: str | None
    train_split: str
    val_split: str
    run_dir: str
    device: str = "auto"
    resume: str | None = None
    continue_from: str | None = None  # a checkpoint this new run continues (training/continuation.py)
    overwrite: bool = False  # a fresh run into a non-empty run_dir moves the old files aside first
    trust_checkpoint: bool = False  # allow full-pickle loads of checkpoints written by other code
    max_train_samples: int | None = None
    max_val_samples: int | None = None
    skip_nonfinite: bool = False
    skip_bad_images: bool = False
    tensorboard: bool = False

    def data(self) -> dict:
        """Where the data comes from (a checkpoint's ``data``: ``--resume`` defaults to it)."""
        return {k: getattr(self, k) for k in ("path", "train_split", "val_split", "max_train_samples",
                                              "max_val_samples")}
