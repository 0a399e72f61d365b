"""The mutable part of a run: where it is and what it has summed so far (``TrainState``), saved in every
checkpoint; everything else of a run is fixed once built (``training.run.Run``)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field


@dataclass
class TrainState:
    """Position in the run, the current epoch's partial statistics and skip counts."""

    epoch: int = 0  # epoch being trained
    epoch_step: int = 0  # steps of ``epoch`` already done (one rank's batches)
    iteration: int = 0  # steps done in the whole run
    best_metric: float = -math.inf
    sums: dict = field(default_factory=dict)  # partial epoch statistics (host floats)
    summed_steps: int = 0  # steps that entered ``sums`` (skipped batches do not)
    skipped_batches: int = 0  # steps of this epoch whose update was refused (--skip_nonfinite)
    skipped_images: int = 0  # images of this epoch the loader could not read (--skip_bad_images)
    seconds: float = 0.0  # training time of this epoch so far
    saved_at: tuple[int, int, int] | None = None  # this process's last last.pt (position); not saved

    @property
    def position(self) -> tuple[int, int, int]:
        """(iteration, epoch, epoch_step)."""
        return self.iteration, self.epoch, self.epoch_step

    def to_dict(self) -> dict:
        """The saved fields as plain values (a checkpoint's ``state``)."""
        saved = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "saved_at"}
        saved["sums"] = dict(saved["sums"])  # a copy: the checkpoint keeps this moment's sums
        return saved

    def next_epoch(self) -> None:
        """Count the epoch as done and start the next from zero."""
        self.epoch, self.epoch_step, self.sums, self.summed_steps, self.seconds = self.epoch + 1, 0, {}, 0, 0.0
        self.skipped_batches = self.skipped_images = 0


def resumed_state(saved: dict, saved_world: int, world: int, batch_size: int) -> tuple[TrainState, str | None]:
    """The state a run resumes from a checkpoint's ``state`` saved by ``saved_world`` processes, on ``world``
    processes now, and a note when the epoch position had to be converted.

    ``epoch_step`` counts each rank's batches, so a mid-epoch position moves through the batches done by all
    ranks (the sampler deals the same epoch permutation round-robin over the ranks). Rounded down: up to one
    global batch is seen again."""
    state = TrainState(**saved)
    if saved_world == world or state.epoch_step == 0:
        return state, None
    done = state.epoch_step * saved_world  # batches of this epoch, all ranks together
    old, state.epoch_step = state.epoch_step, done // world
    again = (done - state.epoch_step * world) * batch_size
    return state, (f"note: checkpoint of {saved_world} process(es) resumed on {world}: epoch position {old} -> "
                   f"{state.epoch_step} steps per process ({again} images of this epoch are seen again)")
