"""The host process: seeding, glibc and OpenCV tuning for DataLoader workers, and what machine this is."""

from __future__ import annotations

import ctypes
import os
import platform
import random
import signal
import sys
import threading

import cv2
import numpy as np
import torch

from utils.errors import STOP_SIGNALS


def cpu_model_name() -> str:
    """The CPU's model name from /proc/cpuinfo, or what ``platform`` knows where that file is missing."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_description() -> str:
    """One line naming the CPU model, core count, GPU (if any) and torch version of this machine."""
    cpu = cpu_model_name()
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU"
    return f"{cpu}, {os.cpu_count()} cores{gpu}, torch {torch.__version__}, Python {platform.python_version()}"


MALLOC_ENV = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_")


def tune_malloc() -> bool:
    """Make glibc keep freed memory for reuse: no mmap per large block, no trimming of the heap top.

    The same as ``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=<huge>`` but applied from inside the process, so
    DataLoader workers and the trainer get it without a wrapper script. Without it every large buffer (a
    256x256 crop, a batch's activations) is fresh zero pages from the kernel: 10-15% of a CPU training step
    at 256 input / batch 8, half of a cached input pipeline's rate (docs/performance.md). Memory then stays
    at its peak instead of being returned between steps. Does nothing off glibc or when either variable
    is set (to opt out: ``MALLOC_MMAP_MAX_=65536``, glibc's default). Returns whether it applied.
    """
    if not sys.platform.startswith("linux") or any(k in os.environ for k in MALLOC_ENV):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_max = -1, -4  # <malloc.h>
        return bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, -1))  # -1: never trim
    except (OSError, AttributeError):  # musl or another libc without mallopt
        return False


def single_threaded_opencv() -> None:
    """One OpenCV thread, set in the parent before DataLoader workers fork (they inherit it): the workers
    already use every core, extra threads only contend. Never call ``cv2.setNumThreads`` in a worker: in a
    forked child it deadlocks once the parent's OpenCV thread pool has run (its condition variables still
    count the parent's threads)."""
    cv2.setNumThreads(1)


def worker_init(_: int) -> None:
    """DataLoader worker start: glibc told to reuse freed memory (fresh pages for every sample's buffers
    halve a worker's rate), and a scheduler's stop signals kept away (``ignore_stop_signals_of_others``)."""
    tune_malloc()
    ignore_stop_signals_of_others()


def ignore_stop_signals_of_others() -> None:
    """In a DataLoader worker: ignore the stop signals (``STOP_SIGNALS``) unless its trainer sends them.

    A scheduler signals every process of a job. A worker ended by it would make the DataLoader raise inside
    the trainer ("worker killed by signal") while the trainer finishes its step and saves; one that kept the
    trainer's handler would raise inside itself. The trainer ends its workers itself when it stops, with a
    sentinel, or at exit with SIGTERM (multiprocessing terminates daemonic children, then waits for them): that
    SIGTERM must still end the worker, as torch's own worker handler does for a SIGTERM from the parent. So
    SIGTERM is blocked and taken by a thread that looks at who sent it."""
    for s in STOP_SIGNALS:
        if s != signal.SIGTERM:
            signal.signal(s, signal.SIG_IGN)
    if not hasattr(signal, "sigwaitinfo"):  # no sender to look at (macOS): the trainer's SIGTERM ends it
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})  # blocked since the fork (WorkerLoader)
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    threading.Thread(target=_end_on_trainers_sigterm, args=(os.getppid(),), daemon=True).start()


class WorkerLoader(torch.utils.data.DataLoader):
    """A DataLoader whose worker processes start with the stop signals blocked.

    A scheduler signals every process of a job, and a worker forked just then would meet the signal before
    its ``worker_init`` keeps such signals away: torch's own handler would end it and the trainer would fail
    with "worker killed by signal" while it saves. Blocked across the fork, the signal waits in the worker
    until ``worker_init`` ignores it, and reaches this process when the block ends."""

    def __iter__(self):
        old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            return super().__iter__()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _end_on_trainers_sigterm(trainer: int) -> None:
    while True:
        if signal.sigwaitinfo({signal.SIGTERM}).si_pid == trainer:
            os._exit(0)


def seed_generators(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (torch's CUDA generators too)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def derived_seed(*parts: int) -> int:
    """A 63-bit seed mixed from ``parts`` (e.g. seed, rank, iteration): distinct tuples give unrelated seeds,
    unlike ``seed + rank``, where (seed 1, rank 0) and (seed 0, rank 1) collide."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0] >> np.uint64(1))


def rank_seed(seed: int, rank: int) -> int:
    """The seed of DDP rank ``rank``'s generators: ``seed`` itself on rank 0 (a run of one process draws as it
    always has), ``derived_seed(seed, rank)`` on the others."""
    return seed if rank == 0 else derived_seed(seed, rank)


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed Python, NumPy and torch; optionally force deterministic kernels (bit-exact CPU resume)."""
    seed_generators(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick the fastest kernels
