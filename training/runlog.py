"""The run's JSON-lines log (one record per epoch, plus events) and optional TensorBoard mirror."""

from __future__ import annotations

import json
import os

from storage.io import append_bytes, json_safe, write_bytes
from utils.errors import UserInputError


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

    def truncate_after(self, epoch: int) -> str | None:
        """On resume: drop epoch records from ``epoch`` on, which the resumed run writes again, and a last
        line cut short (a crash or a full disk mid-write); returns a note on what was cut short, else None."""
        if not self.enabled or not os.path.exists(self.path):
            return None
        keep, broken = [], []
        with open(self.path) as f:
            lines = [line for line in f if line.strip()]
        for n, line in enumerate(lines, 1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                if n < len(lines):  # damage before the end is not a cut-short write: keep the user's file
                    raise UserInputError(f"{self.path}: line {n} is not JSON; repair or move the file") from None
                broken.append(n)
                continue
            if record.get("epoch", -1) < epoch:
                keep.append(line if line.endswith("\n") else line + "\n")
        write_bytes(self.path, "".join(keep).encode())  # atomically: a crash here keeps the old log whole
        return f"its partial last line {broken[0]}" if broken else None

    def write(self, record: dict) -> None:
        """Append one record (and mirror its numbers to TensorBoard); a failed write (a full disk) leaves the
        log as it was and raises one line naming it."""
        if not self.enabled:
            return
        append_bytes(self.path, (json.dumps(json_safe(record), allow_nan=False) + "\n").encode())
        if self.writer is not None and record.get("kind") == "epoch":
            for k, v in record.items():
                if isinstance(v, int | float) and k != "epoch":
                    self.writer.add_scalar(k, v, record["epoch"])
            self.writer.flush()
