"""Where tensors live and in which precision: device choice, autocast, placement of modules and images."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from utils.errors import UserInputError


def resolve_device(flag: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda``/``cuda:N`` without CUDA is a one-line error.

    Only checks and names the device; ``use_device`` makes a CUDA device the current one."""
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


def use_device(device: torch.device) -> torch.device:
    """Make a CUDA ``device`` the current CUDA device before any CUDA work; returns it with its index.

    Without this, ``--device cuda:N`` still opens a context on GPU 0: the DataLoader's pin-memory thread,
    the caching allocator and ``torch.cuda.current_device()`` users all act on the current device, which
    stays 0 unless set. A CPU device is returned unchanged."""
    if device.type != "cuda":
        return device
    index = device.index if device.index is not None else torch.cuda.current_device()
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def cpu_capability() -> str:
    """The vector instruction set ATen's CPU kernels use here: ``DEFAULT``, ``AVX2``, ``AVX512`` (on x86), as
    ``torch.backends.cpu.get_cpu_capability()`` reports it (``ATEN_CPU_CAPABILITY`` can lower it)."""
    return torch.backends.cpu.get_cpu_capability()


def cpu_has_native_bf16() -> bool:
    """True when oneDNN runs bf16 natively here (AVX512-BF16 or AMX); elsewhere bf16 is emulated and slower.
    ``ONEDNN_MAX_CPU_ISA=AVX2`` makes it False, as on a CPU without those instructions."""
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    try:
        return bool(check()) if check is not None else False
    except RuntimeError:
        return False


def cuda_has_native_bf16(device: torch.device) -> bool:
    """True from compute capability 8.0 (A100, H100, RTX 30xx on); V100 (7.0) and T4 (7.5) have no bf16 units."""
    major, _ = torch.cuda.get_device_capability(device)
    return major >= 8


@dataclass(frozen=True)
class Precision:
    """The forward pass's precision and why it was chosen (for the first log line and the benchmark)."""

    dtype: torch.dtype | None  # autocast dtype; None = full fp32
    reason: str


def choose_precision(amp: str, device: torch.device, native_bf16: Callable[[], bool] | None = None) -> Precision:
    """Resolve the ``amp`` setting for ``device``. ``auto``: on CUDA bf16 from compute capability 8.0, fp16
    below (V100, T4; the trainer then scales each optimiser's loss with its own GradScaler); on CPU bf16 only
    where ``native_bf16()`` says the CPU runs it natively (AMX or AVX512-BF16: about 1.5x fp32 there), fp32
    elsewhere (emulated bf16 is about 8x slower than fp32 on an AVX2 CPU). An explicit bf16/fp16/off is
    kept as asked (``precision_note`` warns where it is slow). ``native_bf16`` defaults to
    ``cpu_has_native_bf16``."""
    choices = {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}
    if amp != "auto":
        if amp not in choices:
            raise UserInputError(f"amp={amp!r}: expected auto, bf16, fp16 or off")
        return Precision(choices[amp], f"amp={amp} as set")
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        if major >= 8:
            return Precision(torch.bfloat16, f"amp=auto: GPU compute capability {major}.{minor} has bf16 units")
        return Precision(torch.float16, f"amp=auto: GPU compute capability {major}.{minor} has no bf16 units")
    if device.type == "cpu" and (native_bf16 or cpu_has_native_bf16)():
        return Precision(torch.bfloat16, f"amp=auto: this CPU ({cpu_capability()}) runs bf16 natively")
    return Precision(None, f"amp=auto: this CPU ({cpu_capability()}) has no native bf16 (AVX512-BF16/AMX)")


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype ``choose_precision`` picks for ``amp`` on ``device`` (None = fp32)."""
    return choose_precision(amp, device).dtype


def precision_name(dtype: torch.dtype | None, device: torch.device, training: bool = False) -> str:
    """How a run computes, for its first log line: ``fp32``, ``bf16 autocast`` or ``fp16 autocast`` (with
    ``GradScaler per optimiser`` in training); fp32 on CUDA says when cuDNN may use TF32 for convolutions."""
    if dtype is None:
        tf32 = device.type == "cuda" and torch.backends.cudnn.allow_tf32 and cuda_has_native_bf16(device)
        return "fp32 (TF32 convolutions)" if tf32 else "fp32"
    name = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, str(dtype).removeprefix("torch."))
    scaler = " + GradScaler per optimiser" if training and dtype == torch.float16 else ""
    return f"{name} autocast{scaler}"


def precision_note(dtype: torch.dtype | None, device: torch.device) -> str | None:
    """A warning line when bf16 on this CPU or GPU would be emulated (slower than fp32/fp16), else None."""
    if device.type == "cpu" and dtype == torch.bfloat16 and not cpu_has_native_bf16():
        return "note: this CPU has no native bf16 (AVX512-BF16/AMX): bf16 autocast runs slower than fp32; try --amp off"
    if device.type == "cuda" and dtype == torch.bfloat16 and not cuda_has_native_bf16(device):
        major, minor = torch.cuda.get_device_capability(device)
        return (f"note: this GPU (compute capability {major}.{minor}) has no native bf16: bf16 autocast is emulated; "
                f"--amp auto picks fp16 with loss scaling here")
    return None


@contextlib.contextmanager
def strict_fp32() -> Iterator[None]:
    """True fp32 inside the block: no TF32 in cuBLAS matmuls or cuDNN convolutions (both on by default for
    cuDNN on Ampere and later), matmul precision "highest"; the previous settings are restored on exit."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
             torch.get_float32_matmul_precision())
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved[:2]
        torch.set_float32_matmul_precision(saved[2])


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Autocast context for ``dtype``, or a no-op for full precision."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def place_module(module: nn.Module, device: torch.device, channels_last: bool) -> nn.Module:
    """``module`` on ``device``, with NHWC weights when ``channels_last`` (faster convolutions)."""
    module = module.to(device)
    return module.to(memory_format=torch.channels_last) if channels_last else module


def place_images(images: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    """An image batch (B, 3, H, W) on ``device``, NHWC in memory when ``channels_last``."""
    images = images.to(device, non_blocking=True)
    return images.contiguous(memory_format=torch.channels_last) if channels_last else images


# A tiny function compiled in a fresh interpreter: on CUDA, Triton builds its launcher with the C compiler
# and the Python headers, and inductor's CPU code needs a C++ compiler; minimal images lack them, and
# torch.compile then fails at the first step, minutes into a run. The on-disk caches are off so that a kernel
# compiled earlier cannot stand in for a compiler that is gone.
_COMPILE_PROBE = """
import sys, torch
x = torch.randn(64, device=sys.argv[1])
f = torch.compile(lambda t: (t.sin() + 1.0).sum())
torch.testing.assert_close(f(x), (x.sin() + 1.0).sum())
"""
_PROBE_ENV = {"TORCHINDUCTOR_FX_GRAPH_CACHE": "0", "TORCHINDUCTOR_AUTOGRAD_CACHE": "0"}
COMPILE_PROBE_TIMEOUT_S = 180.0  # a cold start (imports, one Triton kernel) takes 10-30 s


def _probe_failure(stderr: str) -> str:
    """The line of a failed probe's stderr that names the error (``SomeError: message``), else its last line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    named = [line for line in lines if re.match(r"^[\w.]+(Error|Exception|Exit)\b.*:", line)]
    return (named or lines or ["no output"])[-1][:300]


def compile_problem(device: str, timeout_s: float = COMPILE_PROBE_TIMEOUT_S,
                    env: dict[str, str] | None = None) -> str | None:
    """Why ``torch.compile`` cannot work on ``device`` (``cpu``, ``cuda:N``) here, or None when it does:
    compiles and runs a tiny function in a subprocess (a failure there cannot take this process down, a hang
    ends at ``timeout_s``). ``env`` replaces the environment of the subprocess (default: this one's)."""
    run_env = {**(os.environ if env is None else env), **_PROBE_ENV}
    try:
        done = subprocess.run([sys.executable, "-c", _COMPILE_PROBE, device], env=run_env,
                              capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return f"a tiny compiled function did not finish within {timeout_s:g} s"
    except OSError as err:
        return f"could not start {sys.executable}: {err.strerror or err}"
    return None if done.returncode == 0 else _probe_failure(done.stderr)


def resolve_compile(requested: bool, device: torch.device,
                    problem: Callable[[str], str | None] | None = None) -> tuple[bool, str | None]:
    """Whether to torch.compile the networks on ``device``, and the one line to print when a requested
    compile falls back to eager (None otherwise). ``problem`` defaults to ``compile_problem``."""
    if not requested:
        return False, None
    why = (problem or compile_problem)(str(device))
    if why is None:
        return True, None
    return False, f"note: compile=True but torch.compile cannot work here ({why}): running eager"
