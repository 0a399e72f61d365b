"""The run's JSON-lines log (one record per epoch, plus events) and optional TensorBoard mirror."""

from __future__ import annotations

import json
import os

from utils.errors import UserInputError
from utils.io import json_safe


class RunLog:
    """Appends records to ``run_dir/log.jsonl``; writes only on the main rank."""

    def __init__(self, run_dir: str, enabled: bool, tensorboard: bool = False):
        self.path = os.path.join(run_dir, "log.jsonl")
        self.enabled = enabled
        self.writer = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise UserInputError("--tensorboard: the tensorboard package is not installed "
                                     "(pip install tensorboard), or drop the flag") from None
            self.writer = SummaryWriter(os.path.join(run_dir, "tensorboard"))

    def truncate_after(self, epoch: int) -> None:
        """On resume: drop epoch records from ``epoch`` on, which the resumed run writes again."""
        if not self.enabled or not os.path.exists(self.path):
            return
        with open(self.path) as f:
            keep = [line for line in f if line.strip() and json.loads(line).get("epoch", -1) < epoch]
        with open(self.path, "w") as f:
            f.writelines(keep)

    def write(self, record: dict) -> None:
        """Append one record (and mirror its numbers to TensorBoard)."""
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(json_safe(record), allow_nan=False) + "\n")
        if self.writer is not None and record.get("kind") == "epoch":
            for k, v in record.items():
                if isinstance(v, int | float) and k != "epoch":
                    self.writer.add_scalar(k, v, record["epoch"])
            self.writer.flush()
