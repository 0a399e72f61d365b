"""Where and how the run executes: device, precision, seeding, optimisers, distributed set-up."""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import random
import sys
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from utils.errors import UserInputError


def resolve_device(flag: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda``/``cuda:N`` without CUDA is a one-line error."""
    if flag == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(flag)
    except RuntimeError:
        raise UserInputError(f"--device: '{flag}' is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserInputError(f"--device {flag}: CUDA is not available on this machine; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserInputError(f"--device {flag}: only {torch.cuda.device_count()} CUDA device(s) present")
    elif device.type != "cpu":
        raise UserInputError(f"--device: '{flag}' is not supported; use auto, cpu, cuda or cuda:N")
    return device


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


def cpu_has_native_bf16() -> bool:
    """True when oneDNN runs bf16 natively here (AVX512-BF16 or AMX); elsewhere bf16 is emulated and slower."""
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    try:
        return bool(check()) if check is not None else False
    except RuntimeError:
        return False


AMP_MODES = ("auto", "bf16", "fp16", "off")


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """Precision of the forward pass: bf16 on CUDA for ``auto``, full fp32 on CPU unless asked (``bf16``)."""
    if amp == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    choices = {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}
    if amp not in choices:
        raise UserInputError(f"amp={amp!r}: expected auto, bf16, fp16 or off")
    return choices[amp]


def precision_note(dtype: torch.dtype | None, device: torch.device) -> str | None:
    """A warning line when bf16 on this CPU would be emulated (slower than fp32), else None."""
    if device.type == "cpu" and dtype == torch.bfloat16 and not cpu_has_native_bf16():
        return "note: this CPU has no native bf16 (AVX512-BF16/AMX): bf16 autocast runs slower than fp32; try --amp off"
    return None


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Autocast context for ``dtype``, or a no-op for full precision."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


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


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed Python, NumPy and torch; optionally force deterministic kernels (bit-exact CPU resume)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick the fastest kernels


def build_optimizer(name: str, params, lr: float, momentum: float, weight_decay: float,
                    device: torch.device) -> torch.optim.Optimizer:
    """RMSprop (the paper's), Adam or SGD; fused/foreach kernels where the device has them."""
    fast = {"fused": True} if device.type == "cuda" else {"foreach": True}
    if name == "RMSprop":
        return torch.optim.RMSprop(params, lr=lr, momentum=momentum, weight_decay=weight_decay, foreach=True)
    if name == "Adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, **fast)
    if name == "SGD":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, **fast)
    raise UserInputError(f"--optimizer_type: unknown optimizer '{name}'; valid: RMSprop, Adam, SGD")


@dataclass(frozen=True)
class DistInfo:
    """Rank layout of this process (world_size 1 = not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Only rank 0 logs and writes checkpoints."""
        return self.rank == 0


def init_distributed(device_flag: str) -> tuple[DistInfo, torch.device]:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); pick this rank's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(), resolve_device(device_flag)
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    device = resolve_device(device_flag)
    if device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return info, device


def cleanup_distributed() -> None:
    """Leave the process group if one was joined."""
    if dist.is_initialized():
        dist.destroy_process_group()
