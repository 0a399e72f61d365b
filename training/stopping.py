"""Preemption as a normal event: a stop signal during training ends the current step, writes a resumable
``last.pt`` and exits with one line naming it and how to continue.

A cluster scheduler sends SIGTERM before it preempts a job or at the end of its time limit (Slurm, PBS,
Kubernetes), some send SIGUSR1 or SIGUSR2 a while ahead (Slurm's ``--signal``, SGE's ``-notify``, LSF); a
closed terminal sends SIGHUP, a CPU-time limit SIGXCPU (``utils.errors.STOP_SIGNALS``). While ``fit`` runs,
these only note the signal (``StopSignals``): the loop asks between steps (``StopSignals.batches``) and once
an epoch's steps are done, and ``stop_here`` saves the position as a ``checkpoint_every`` save does and
raises ``Stopped`` (exit code 128 + the signal's number: 143 for SIGTERM). ``--resume`` then continues
exactly. A signal during validation takes effect after it, at the next step. Under DDP every rank asks at
the same points and the ranks agree on the largest signal any of them got, so all stop after the same step
and write one checkpoint together, whichever rank the signal reached. A further signal, or Ctrl-C, while
that checkpoint is written is noted and not acted on: the write finishes, nothing is cut in half.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import NoReturn

from runtime.distributed import control_group, max_over_ranks
from training.run import Run, save
from utils.errors import STOP_SIGNALS, Stopped, signal_handlers, signal_name


@dataclass
class StopSignals:
    """The stop signal this process received (0: none), and the agreement of all ranks on it."""

    distributed: bool = False  # agree across the ranks of a process group before acting
    signum: int = 0
    _group: object = None
    _grouped: bool = False

    def note(self, signum: int, _frame: object = None) -> None:
        """Signal handler: remember the first stop signal; the loop acts on it at its next safe point."""
        self.signum = self.signum or signum

    def agreed(self) -> int:
        """The signal to stop for now (0: go on): this process's, or under DDP the largest any rank got. A
        collective under DDP: every rank asks at the same points of the loop."""
        if not self.distributed:
            return self.signum
        if not self._grouped:  # made at the first question, which every rank asks at the same point
            self._group, self._grouped = control_group(), True
        return max_over_ranks(self.signum, self._group)

    def batches(self, loader: Iterable) -> Iterator:
        """``loader``'s batches until a stop is agreed; asked after each fetch, before its step, so the last
        step taken is complete and the fetched batch is the first one a resumed run takes again."""
        for batch in loader:
            if self.agreed():
                return
            yield batch


@contextlib.contextmanager
def stop_signals(distributed: bool) -> Iterator[StopSignals]:
    """For the block, the stop signals are noted on the returned ``StopSignals`` instead of ending the run."""
    stop = StopSignals(distributed)
    with signal_handlers(stop.note):
        yield stop


def _ignore(_signum: int, _frame: object = None) -> None:
    """A signal while the stop's checkpoint is written: the process is ending already."""


def stop_here(run: Run, signum: int) -> NoReturn:
    """Write the run's position to ``last.pt`` (unless this process just did), then raise ``Stopped`` with one
    line naming it and how to continue. Every rank calls it (the write gathers every rank's generators)."""
    st = run.state
    with signal_handlers(_ignore, (*STOP_SIGNALS, signal.SIGINT)):
        if st.saved_at != st.position:
            save(run, "last.pt")
    last = os.path.join(run.spec.run_dir, "last.pt")
    raise Stopped(f"stopped by {signal_name(signum)} after iteration {st.iteration} (epoch {st.epoch}, step "
                  f"{st.epoch_step}); resumable checkpoint: {last}; continue with the same command and --resume "
                  f"{run.spec.run_dir}", signum)
