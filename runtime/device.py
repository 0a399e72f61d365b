"""Where tensors live and in which precision: device choice, autocast, placement of modules and images."""

from __future__ import annotations

import contextlib

import torch
from torch import nn

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


def cpu_has_native_bf16() -> bool:
    """True when oneDNN runs bf16 natively here (AVX512-BF16 or AMX); elsewhere bf16 is emulated and slower."""
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    try:
        return bool(check()) if check is not None else False
    except RuntimeError:
        return False



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


def place_module(module: nn.Module, device: torch.device, channels_last: bool) -> nn.Module:
    """``module`` on ``device``, with NHWC weights when ``channels_last`` (faster convolutions)."""
    module = module.to(device)
    return module.to(memory_format=torch.channels_last) if channels_last else module


def place_images(images: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    """An image batch (B, 3, H, W) on ``device``, NHWC in memory when ``channels_last``."""
    images = images.to(device, non_blocking=True)
    return images.contiguous(memory_format=torch.channels_last) if channels_last else images
