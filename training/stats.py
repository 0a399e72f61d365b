"""Per-step statistics kept on the device and read back to the host in one transfer every ``print_every`` steps;
a NaN or inf among them ends the run (``DivergedError``)."""

from __future__ import annotations

import torch

from utils.errors import OneLineExit

# Statistics taken on some steps only (one batch every ``print_every`` steps) -> the key counting those steps:
# their epoch value is the mean over the measured steps, not over all steps.
SOMETIMES = {"adv_grad_ratio": "adv_grad_measured"}


class DivergedError(OneLineExit):
    """The run diverged: a loss term or a weight became NaN/inf. One line naming the iteration and the term or
    tensor, exit code 2 (not the user's mistake: lower the lr, or --skip_nonfinite)."""


class StepStats:
    """Collects each step's detached loss terms; ``read_back`` is the training loop's only host sync."""

    def __init__(self, device: torch.device, first_iteration: int):
        self.device = device
        self.first_iteration = first_iteration  # iteration of the first pending step
        self.pending: list[dict[str, torch.Tensor]] = []

    def add(self, stats: dict[str, torch.Tensor]) -> None:
        """Queue one step's statistics (device tensors, no sync)."""
        self.pending.append(stats)

    def read_back(self) -> tuple[dict[str, float], int]:
        """(sum over the pending steps of every term, number of steps); raises naming the first NaN/inf term."""
        pending, self.pending = self.pending, []
        first, self.first_iteration = self.first_iteration, self.first_iteration + len(pending)
        if not pending:
            return {}, 0
        keys = sorted({k for s in pending for k in s})
        zero = torch.zeros((), device=self.device)
        table = torch.stack([torch.stack([s.get(k, zero).float() for k in keys]) for s in pending]).cpu()
        bad = ~torch.isfinite(table)
        if bad.any():
            step, term = (int(i) for i in bad.nonzero()[0])
            raise DivergedError(f"non-finite {keys[term]} at iteration {first + step}")
        return dict(zip(keys, table.sum(0).tolist(), strict=True)), len(pending)


def epoch_means(sums: dict[str, float], steps: int) -> dict[str, float]:
    """Per-step means of the summed statistics; a ``SOMETIMES`` statistic is averaged over its measured steps
    (its count key is kept as the number of them); one that was never measured is left out."""
    counts = set(SOMETIMES.values())
    out = {k: v / max(steps, 1) for k, v in sums.items() if k not in SOMETIMES and k not in counts}
    for key, count in SOMETIMES.items():
        if sums.get(count, 0) > 0:
            out[key], out[count] = sums[key] / sums[count], int(round(sums[count]))
    return out
