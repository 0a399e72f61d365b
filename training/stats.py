"""Per-step statistics kept on the device and read back to the host in one transfer every ``print_every`` steps."""

from __future__ import annotations

import torch

from training.checkpoint import NonFiniteError


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
            raise NonFiniteError(f"non-finite {keys[term]} at iteration {first + step}")
        return dict(zip(keys, table.sum(0).tolist(), strict=True)), len(pending)
