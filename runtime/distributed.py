"""The process group of a ``torchrun`` launch: rank layout, joining and leaving."""

from __future__ import annotations

import datetime
import math
import os
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist

from runtime.device import resolve_device, use_device
from utils.errors import UserInputError

# How long a collective may wait for the slowest rank before NCCL's watchdog (or gloo) ends the run. torch's
# default is 10 minutes; with torch.compile every rank compiles its own graphs before its first backward
# (DDP's first all-reduce), and on 8 ranks sharing a box's cores (``compile_threads_per_rank``) a cold compile
# of the 8-stack hourglass is itself minutes long: ranks that finish early then wait for the last one,
# again at the first validation (a second graph). 30 minutes leaves room for that skew and still ends a
# rank that hangs for good.
DIST_TIMEOUT_ENV = "POSE_DIST_TIMEOUT_S"
DEFAULT_DIST_TIMEOUT_S = 1800.0
COMPILE_THREADS_ENV = "TORCHINDUCTOR_COMPILE_THREADS"


@dataclass(frozen=True)
class DistInfo:
    """Rank layout of this process (world_size 1 = not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    joined: bool = False  # a process group was joined (torchrun launch; also with one process)

    @property
    def is_main(self) -> bool:
        """Only rank 0 logs and writes checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether networks are wrapped in DDP and decisions are agreed across ranks."""
        return self.joined


def launched_by_torchrun() -> bool:
    """torchrun sets TORCHELASTIC_RUN_ID for its workers, also with --nproc_per_node 1; other launchers that
    set WORLD_SIZE > 1 count too."""
    return "TORCHELASTIC_RUN_ID" in os.environ or int(os.environ.get("WORLD_SIZE", "1")) > 1


def process_group_timeout(environ: Mapping[str, str]) -> datetime.timedelta:
    """The collective timeout: ``POSE_DIST_TIMEOUT_S`` seconds when set, else ``DEFAULT_DIST_TIMEOUT_S``;
    anything but a positive number is a one-line error naming the variable."""
    raw = environ.get(DIST_TIMEOUT_ENV, "").strip()
    if not raw:
        return datetime.timedelta(seconds=DEFAULT_DIST_TIMEOUT_S)
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise UserInputError(f"{DIST_TIMEOUT_ENV}={raw!r}: expected a positive number of seconds "
                             f"(default {DEFAULT_DIST_TIMEOUT_S:g})")
    return datetime.timedelta(seconds=seconds)


def compile_threads_per_rank(cores: int, local_ranks: int) -> int:
    """Inductor's compile workers for one rank: the node's cores shared by its ranks (at least one). Left to
    itself every rank starts min(32, cores) workers, so 8 ranks on 16 cores would run 128 compile processes
    at once."""
    return max(1, cores // max(1, local_ranks))


def share_compile_threads(threads: int) -> bool:
    """Set ``TORCHINDUCTOR_COMPILE_THREADS`` to ``threads`` for this process unless the user set it; inductor
    reads the variable once, when its config is imported, so an already imported config is set too.
    Returns whether anything was set."""
    if COMPILE_THREADS_ENV in os.environ:
        return False
    os.environ[COMPILE_THREADS_ENV] = str(threads)
    config = sys.modules.get("torch._inductor.config")
    if config is not None:
        config.compile_threads = threads
    return True


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, where the system reports one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def init_distributed(device_flag: str) -> tuple[DistInfo, torch.device]:
    """Join the process group when launched by torchrun; pick this rank's device and make it current.

    The CUDA device is set before any CUDA work (``use_device``), so no process opens a context on GPU 0
    that it does not train on: rank r of a node uses cuda:LOCAL_RANK, a single process the --device index.
    torchrun with one process joins a group of one (NCCL on CUDA), which runs the multi-GPU code path on
    one GPU. The group's collectives wait up to ``process_group_timeout``; each rank compiles with its share
    of the node's cores (``compile_threads_per_rank``)."""
    if not launched_by_torchrun():
        return DistInfo(), use_device(resolve_device(device_flag))
    info = DistInfo(int(os.environ["RANK"]), int(os.environ.get("WORLD_SIZE", "1")),
                    int(os.environ.get("LOCAL_RANK", "0")), joined=True)
    timeout = process_group_timeout(os.environ)
    device = resolve_device(device_flag)
    if device.type == "cuda":
        device = use_device(torch.device("cuda", info.local_rank))
    share_compile_threads(compile_threads_per_rank(usable_cores(),
                                                   int(os.environ.get("LOCAL_WORLD_SIZE", info.world_size))))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timeout)
    return info, device


def cleanup_distributed() -> None:
    """Leave the process group if one was joined."""
    if dist.is_initialized():
        dist.destroy_process_group()


def all_ranks_agree(flag: bool) -> bool:
    """True only when ``flag`` is True on every rank (an all-reduce MIN): a decision to skip a step must be
    taken by all ranks alike, or the ranks that go on wait forever in DDP's gradient all-reduce."""
    if not dist.is_initialized():
        return flag
    backend = dist.get_backend()
    device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
    value = torch.tensor([1 if flag else 0], dtype=torch.int32, device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return bool(value.item())


def failing_ranks(ok: bool) -> list[str]:
    """Every rank's ``ok`` gathered: the ranks where it is False, as "rank R (host H)", on every rank.

    A collective: every rank must call it. Without a process group: ``["rank 0 (host H)"]`` or ``[]``."""
    mine = (ok, socket.gethostname())
    if not dist.is_initialized():
        gathered = [mine]
    else:
        gathered = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, mine)
    return [f"rank {r} (host {host})" for r, (good, host) in enumerate(gathered) if not good]


def first_error(message: str | None) -> str | None:
    """Every rank's error message (None: no error) gathered: the first rank's that has one, on every rank, so
    that all stop with the same line when one cannot go on. A collective: every rank must call it."""
    if not dist.is_initialized():
        return message
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, message)
    return next((m for m in gathered if m is not None), None)


def main_rank_value(value: object) -> object:
    """Rank 0's ``value``, on every rank (e.g. what rank 0 alone decided); ``value`` itself without a process
    group. A collective: every rank must call it."""
    if not dist.is_initialized():
        return value
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered[0]


def control_group() -> dist.ProcessGroup | None:
    """A gloo group over every rank for small decisions taken each step: under NCCL an all-reduce on a GPU
    tensor would wait for the GPU's queued work each time; on gloo the default group serves (None)."""
    if dist.is_initialized() and dist.get_backend() != "gloo":
        return dist.new_group(backend="gloo")
    return None


def max_over_ranks(value: int, group: dist.ProcessGroup | None = None) -> int:
    """The largest of every rank's ``value`` (an all-reduce MAX on the CPU, over ``group``: a gloo group, or
    the default group when it is gloo); ``value`` itself without a process group."""
    if not dist.is_initialized():
        return value
    tensor = torch.tensor([value], dtype=torch.int64)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX, group=group)
    return int(tensor.item())


def launch_rank() -> str | None:
    """The words "rank R" for a torchrun worker before it joins the group (for error lines), else None."""
    return f"rank {os.environ.get('RANK', '?')}" if launched_by_torchrun() else None
