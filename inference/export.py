"""Weights to share: a training checkpoint -> a weights-only file (and optionally an ONNX graph of G).

The weights-only file holds tensors and plain values only, so it loads with ``torch.load(weights_only=True)``
(``checkpoint.load_checkpoint`` reads it like a training checkpoint; test.py and predict.py accept it):

    format            "posenet-generator" (this module's marker), format_version 1
    generator         G's state dict (float tensors in float32, or float16 with ``fp16`` except BatchNorm's
                      running statistics, which stay float32; loading copies them back into float32 parameters)
    model_args        G's constructor arguments
    config            the resolved config (every key, plain types)
    dataset, method   what G was trained on and how
    weights_dtype     "float32" or "float16" (the weights' dtype; BatchNorm statistics are float32 in both)
    source            git revision, epoch and best validation metric of the checkpoint it came from

The ONNX graph is G at inference: a normalised RGB image batch (B, 3, R, R), R = the config's ``input_res``,
in; the last stack's pose heatmaps (B, J, R/4, R/4) out (no flip averaging, no decoding).
"""

from __future__ import annotations

import inspect
import json
import math
import warnings

import numpy as np
import torch
from torch import nn

from checkpoint import save_checkpoint
from datasets import DATASETS
from inference.weights import generator_from_checkpoint
from storage.io import atomic_output
from utils.errors import UserInputError

EXPORT_FORMAT = "posenet-generator"
EXPORT_VERSION = 1
ONNX_OPSET = 17  # supported by torch's TorchScript exporter and every onnxruntime of the last years
ONNX_RTOL, ONNX_ATOL = 1e-3, 1e-4  # onnxruntime vs torch on the same fp32 weights: kernel order differences only


def export_record(ckpt: dict, fp16: bool = False, flag: str = "--checkpoint") -> dict:
    """The weights-only record (module doc) of a loaded checkpoint (training checkpoint or export); ``flag``:
    how its errors name the argument that gave it."""
    cfg, generator = generator_from_checkpoint(ckpt, flag=flag)
    statistics = batchnorm_statistics(generator)
    state = {}
    for name, tensor in generator.state_dict().items():
        tensor = tensor.detach().cpu()
        if fp16 and tensor.is_floating_point() and name not in statistics:
            half = tensor.half()
            if not torch.isfinite(half).all() and torch.isfinite(tensor).all():
                raise UserInputError(f"--fp16: generator tensor {name} exceeds float16's range (max 65504); "
                                     "export without --fp16")
            tensor = half
        state[name] = tensor.clone()
    state_of_run = ckpt.get("state") if isinstance(ckpt.get("state"), dict) else {}  # training checkpoints
    source = ckpt.get("source") if isinstance(ckpt.get("source"), dict) else {}  # an export exported again
    best = state_of_run.get("best_metric", source.get("best_metric"))
    return {
        "format": EXPORT_FORMAT, "format_version": EXPORT_VERSION,
        "generator": state,
        "model_args": {k: v for k, v in ckpt["model_args"].items()},
        "config": cfg.to_dict(),
        "dataset": ckpt.get("dataset"),
        "method": ckpt.get("method") or cfg.method,
        "weights_dtype": "float16" if fp16 else "float32",
        "source": {"git": ckpt.get("git", source.get("git")), "epoch": state_of_run.get("epoch", source.get("epoch")),
                   "best_metric": best if best is None or math.isfinite(best) else None},
    }


def batchnorm_statistics(model: nn.Module) -> set[str]:
    """State-dict names of the BatchNorm running means and variances in ``model``. An fp16 export keeps them
    float32: a convolution followed by BatchNorm may grow its weights freely (BatchNorm cancels their scale), so
    the variance of its output can pass float16's largest value (65504) while the network's output stays the
    same."""
    return {f"{prefix}.{stat}" if prefix else stat for prefix, module in model.named_modules()
            if isinstance(module, nn.modules.batchnorm._BatchNorm) for stat in ("running_mean", "running_var")}


def save_export(record: dict, path: str) -> str:
    """Write the record as every checkpoint is written (``checkpoint.save_checkpoint``: plain types only,
    atomic and durable); returns ``path``."""
    save_checkpoint(record, path)
    return path


class PoseHeatmaps(nn.Module):
    """G at inference: normalised images (B, 3, R, R) -> last-stack pose heatmaps (B, J, R/4, R/4)."""

    def __init__(self, generator: nn.Module):
        super().__init__()
        self.generator = generator

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.generator(images)["pose"][-1]


def require_onnx(flag: str = "--onnx"):
    """The ``onnx`` module (torch's exporter writes the graph with it), or a one-line error naming the package."""
    try:
        import onnx
    except ModuleNotFoundError:
        raise UserInputError(f"{flag}: needs the Python package 'onnx' (pip install onnx)") from None
    return onnx


def export_onnx(record: dict, path: str, opset: int = ONNX_OPSET) -> str:
    """Write G of ``record`` as an ONNX graph (module doc) with a dynamic batch axis, atomically; the graph's
    metadata names the input normalisation and the joints. Returns ``path``."""
    onnx = require_onnx()
    cfg, generator = generator_from_checkpoint(record)
    model = PoseHeatmaps(generator.float().eval())
    example = torch.zeros(1, 3, cfg.input_res, cfg.input_res)
    # torch >= 2.9 defaults to the torch.export-based exporter, which needs onnxscript; the TorchScript one
    # needs only onnx and handles G (fixed shapes, no control flow on data)
    legacy = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
    with atomic_output(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice and tracer notes
        torch.onnx.export(model, (example,), tmp, input_names=["image"], output_names=["heatmaps"],
                          dynamic_axes={"image": {0: "batch"}, "heatmaps": {0: "batch"}}, opset_version=opset,
                          **legacy)
        graph = onnx.load(tmp)
        spec = DATASETS[record["dataset"]].spec if record.get("dataset") in DATASETS else None
        meta = {"input": "RGB image crop, (pixel / 255 - mean) / std per channel, (B, 3, R, R) float32",
                "mean": json.dumps(list(cfg.mean)), "std": json.dumps(list(cfg.std)),
                "input_res": str(cfg.input_res), "dataset": str(record.get("dataset")),
                "joints": json.dumps(list(spec.names) if spec else None)}
        onnx.helper.set_model_props(graph, meta)
        onnx.save(graph, tmp)
    return path


def check_onnx(path: str, record: dict, seed: int = 0) -> float | None:
    """Run the graph once with onnxruntime on random inputs and compare with torch: the largest absolute
    difference, or None when onnxruntime is not installed; raises when outside the tolerance."""
    try:
        import onnxruntime
    except ModuleNotFoundError:
        return None
    cfg, generator = generator_from_checkpoint(record)
    model = PoseHeatmaps(generator.float().eval())
    images = torch.randn(2, 3, cfg.input_res, cfg.input_res, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        expected = model(images).numpy()
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    got = session.run(["heatmaps"], {"image": images.numpy()})[0]
    if got.shape != expected.shape or not np.allclose(got, expected, rtol=ONNX_RTOL, atol=ONNX_ATOL):
        diff = float(np.abs(got - expected).max()) if got.shape == expected.shape else math.inf
        raise UserInputError(f"--onnx: {path} differs from torch by up to {diff:.3g} on the check input "
                             f"(tolerance {ONNX_ATOL} + {ONNX_RTOL} x |torch|): the graph is not G")
    return float(np.abs(got - expected).max())
