"""The process group of a ``torchrun`` launch: rank layout, joining and leaving."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

import torch
import torch.distributed as dist

from runtime.device import resolve_device, use_device


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


def init_distributed(device_flag: str) -> tuple[DistInfo, torch.device]:
    """Join the process group when launched by torchrun; pick this rank's device and make it current.

    The CUDA device is set before any CUDA work (``use_device``), so no process opens a context on GPU 0
    that it does not train on: rank r of a node uses cuda:LOCAL_RANK, a single process the --device index.
    torchrun with one process joins a group of one (NCCL on CUDA), which runs the multi-GPU code path on
    one GPU."""
    if not launched_by_torchrun():
        return DistInfo(), use_device(resolve_device(device_flag))
    info = DistInfo(int(os.environ["RANK"]), int(os.environ.get("WORLD_SIZE", "1")),
                    int(os.environ.get("LOCAL_RANK", "0")), joined=True)
    device = resolve_device(device_flag)
    if device.type == "cuda":
        device = use_device(torch.device("cuda", info.local_rank))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
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
