"""Throughput of the input pipeline, the training steps and inference; prints a table, optionally writes JSON.

    python -m scripts.benchmark --config config.cpu_small --json docs/bench-cpu.json --overwrite  # the committed one
    python -m scripts.benchmark --config config.newell8 --batch_size 32 --device cuda --json bench-h100.json
    python -m scripts.benchmark --quick --config config.tiny          # smoke test, well under a minute on CPU

Figures (images/s unless noted):
  pipeline_images_per_s_per_worker  one DataLoader worker's work in this process (one torch and one OpenCV
      thread, glibc tuned as in a worker): decode + augmentation warp + pose and occlusion targets + tensors,
      on the real lspet-mini photos at --pipeline_res input / (res/4) targets whatever the model config;
      also with the decoded-image cache (cache_images=True) and through a real 1-worker DataLoader.
  train_images_per_s  the real steps of training/steps.py on synthetic random batches (warm-up, then timed
      windows; best window), "plain" (true fp32: TF32 off for cuBLAS and cuDNN; NCHW, no compile, PyTorch's
      default optimiser kernels) and "optimized" (the fastest correct path for this machine: the config's
      channels_last, the precision ``amp`` resolves to here - on CUDA bf16 from compute capability 8.0, fp16
      below; on CPU bf16 only where the CPU runs it natively, else fp32 -, torch.compile on CUDA,
      foreach/fused optimisers), measured in the same run. The record names the CPU capability and each
      variant's precision with the reason.
  inference_images_per_s  G's forward (last-stack heatmaps, no flip) for a batch and for a single image;
      on CUDA each batch size gets its own freshly compiled G.
  tflops_achieved / peak_fraction  FLOPs of one step (torch.utils.flop_counter) x optimized steps/s; the
      peak is --peak_tflops or the dense bf16 peak of a known GPU (PEAK_BF16_TFLOPS), else None.
  photo_pipeline (--photo_pipeline, alone)  the input pipeline on generated 1280x720 JPEG photos with
      MPII-like person boxes (datasets/photos.py), 256 px input / 64 px targets, the default augmentation:
      samples/s of one worker's work in this process and through a real DataLoader with N workers, for
      the sample path of commit bd07612 ("baseline": whole-photo decode and RGB conversion, float images
      and target maps through the loader), the direct path (reduced JPEG decode, crop-only conversion,
      uint8 crops, targets drawn on the device) and the prepared path (python -m scripts.prepare_crops).

    python -m scripts.benchmark --photo_pipeline --json pipeline.json      # about 40 s on 2 cores
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import cv2
import numpy as np
import torch
import torch._dynamo
from torch.utils.data import default_collate
from torch.utils.flop_counter import FlopCounterMode

from cli.common import add_device_flag, add_overwrite_flag
from config import load_config, parse_overrides, preset_name
from datasets import build_dataset
from datasets.base import decode_factor, expand_batch
from datasets.mpii import MPIIDataset
from datasets.photos import JPEG_QUALITY, PHOTO_SIZE, write_photo_set
from datasets.sampler import EpochSampler
from datasets.skeleton import MPII
from inference.predict import predict_heatmaps
from runtime.budget import window_iterations
from runtime.device import (
    choose_precision,
    cpu_capability,
    place_images,
    precision_name,
    resolve_device,
    strict_fp32,
    use_device,
)
from runtime.system import (
    MALLOC_ENV,
    cpu_model_name,
    seed_everything,
    single_threaded_opencv,
    tune_malloc,
    worker_init,
)
from storage.io import check_replaceable, replacing_note, write_json
from training.build import (
    adversarial_params,
    build_nets,
    build_optimizers,
    build_step_context,
    error_loss_params,
    place_nets,
    resolve_for_dataset,
)
from training.data import CompactSamples, resolve_workers, usable_cores
from training.steps import to_device, train_step
from utils.errors import UserInputError, exit_on_user_error

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DATA = os.path.join(REPO, "..", "shared", "data", "lspet-mini")  # ../shared beside the repository

# Dense (no sparsity) bf16 tensor-core peaks in TFLOP/s from NVIDIA's data sheets, matched in order against
# torch.cuda.get_device_name(): the H100 comes in three boards with different clocks and power limits
# ("NVIDIA H100 80GB HBM3" is the SXM board). Whole words only, so "GH200" is not an H200. A name matching
# none (H200 NVL, GH200, older GPUs) has no peak here: pass --peak_tflops.
PEAK_BF16_TFLOPS = (
    (r"\bH100\b.*\bPCIe\b", 756.0),
    (r"\bH100\b.*\bNVL\b", 835.0),
    (r"\bH100\b.*\b(SXM\d?|HBM3)\b", 989.4),
    (r"\bH200\b(?!.*\bNVL\b)", 989.4),
)
NUM_JOINTS = 16  # MPII
METHODS = ("supervised", "adversarial")
MODES = ("plain", "optimized")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_device_flag(p)
    p.add_argument("--config", default="config.default_config", help="preset of the timed models")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config entry")
    p.add_argument("--batch_size", type=int, default=None, help="images per step (default: the config's)")
    p.add_argument("--quick", action="store_true", help="few iterations: a smoke test, not a measurement")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps before timing (default 3; 2 quick)")
    p.add_argument("--iters", type=int, default=None, help="steps per timed window (default 10; 2 quick)")
    p.add_argument("--repeats", type=int, default=None, help="timed windows per figure, best kept (default 3)")
    p.add_argument("--data", default=None,
                   help="LSPET-layout folder (lspet-mini, lspet-9k) for the pipeline figure (default: "
                        "../shared/data/lspet-mini beside the repository, synthetic data when that is absent)")
    p.add_argument("--pipeline_res", type=int, default=256, help="input side of the pipeline figure (targets res/4)")
    p.add_argument("--pipeline_samples", type=int, default=None, help="samples per pipeline figure (default 600)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: PyTorch's choice)")
    p.add_argument("--peak_tflops", type=float, default=None, help="peak of the optimized precision, TFLOP/s")
    p.add_argument("--no_compile", action="store_true", help="optimized runs without torch.compile on CUDA")
    p.add_argument("--no_malloc_tuning", action="store_true",
                   help="leave glibc's malloc as it is (the trainer and its workers tune it, see docs)")
    p.add_argument("--methods", default=",".join(METHODS), help="training steps to time (comma-separated)")
    p.add_argument("--skip_pipeline", action="store_true", help="only the model timings")
    p.add_argument("--skip_inference", action="store_true", help="no inference figures (each is a compile on CUDA)")
    p.add_argument("--time_budget", type=float, default=None, metavar="SECONDS",
                   help="size the training figures' timed windows to about this many seconds in all, warm-ups "
                        "(compile) included: each figure times one warm step, then runs --repeats windows of "
                        "what fits its share (replaces --iters)")
    p.add_argument("--photo_pipeline", action="store_true",
                   help="only the input pipeline on generated full-size photos: baseline, direct, prepared path")
    p.add_argument("--photos", type=int, default=64, help="generated 1280x720 photos for --photo_pipeline")
    p.add_argument("--photo_workers", default=None,
                   help="comma-separated DataLoader worker counts for --photo_pipeline (default: 1 and the "
                        "machine's default per rank)")
    p.add_argument("--json", default=None, help="also write the results to this file")
    add_overwrite_flag(p, "the --json file")
    return p.parse_args(argv)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _best_rate(fn, count: int, device: torch.device, warmup: int, iters: int, repeats: int,
               budget_s: float | None = None) -> dict:
    """Items/s of the fastest of ``repeats`` windows of ``iters`` calls of ``fn`` (``count`` items each), with
    the seconds the ``warmup`` calls took (cuDNN autotuning and torch.compile included) and the number of calls
    after them. With ``budget_s``, one more warm call is timed and ``iters`` becomes what fits the budget left
    after the warm-up (``runtime.budget.window_iterations``; one window when several do not fit)."""
    _sync(device)
    start = time.perf_counter()
    for _ in range(warmup):
        fn()
    _sync(device)
    warmup_s = time.perf_counter() - start
    timed = 0
    if budget_s is not None:
        start = time.perf_counter()
        fn()
        _sync(device)
        step_s, timed = time.perf_counter() - start, 1
        left = budget_s - warmup_s - step_s
        repeats = repeats if left >= repeats * 2 * step_s else 1  # short of time: one window, not several
        iters = window_iterations(left, step_s, repeats)
    rates = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        for _ in range(iters):
            fn()
        _sync(device)
        rates.append(iters * count / (time.perf_counter() - start))
    return {"rate": max(rates), "warmup_s": warmup_s, "timed_steps": timed + iters * repeats}


def _reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_memory_gib(device: torch.device) -> float | None:
    """The most GPU memory tensors held since the last reset (weights, optimiser state, activations); None
    on a CPU, where the process's peak would include everything before."""
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


# ---- input pipeline ------------------------------------------------------------------------------------
def pipeline_dataset(data: str | None, res: int, cache: bool):
    """lspet-mini train split with training augmentation at ``res`` input / ``res // 4`` targets; ``data``
    None: the default folder, or synthetic data when it is absent (a --data given was checked in ``main``)."""
    out = res // 4
    cfg = load_config("default_config", {"input_res": res, "sigma": 2.0 * out / 64,
                                         "cache_images": cache, "synthetic_train_size": 256})
    data = DEFAULT_DATA if data is None else data
    if os.path.isfile(os.path.join(data, "joints.mat")):
        return build_dataset("lspet", data, "train", cfg, train=True), os.path.basename(os.path.normpath(data))
    return build_dataset("synthetic", None, "train", cfg, train=True), "synthetic (lspet-mini not found)"


def measure_pipeline(args: argparse.Namespace, samples: int) -> dict:
    """Samples/s of ``__getitem__`` as one worker runs it, without and with the image cache; and of a real
    1-worker DataLoader (collate and the hand-over to the main process included)."""
    threads, cv_threads = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    result = {}
    try:
        for cache in (False, True):
            ds, name = pipeline_dataset(args.data, args.pipeline_res, cache)
            keys = [(i % len(ds), 1) for i in range(samples)]
            for k in keys[:20]:
                ds[k]
            start = time.perf_counter()
            for k in keys:
                ds[k]
            rate = samples / (time.perf_counter() - start)
            result["pipeline_cached_images_per_s_per_worker" if cache else "pipeline_images_per_s_per_worker"] = rate
            result["pipeline_dataset"] = name
    finally:
        torch.set_num_threads(threads)
        cv2.setNumThreads(cv_threads)
    ds, _ = pipeline_dataset(args.data, args.pipeline_res, False)
    batch = 8
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, sampler=EpochSampler(len(ds), shuffle=True),
                                         num_workers=1, worker_init_fn=worker_init, prefetch_factor=4,
                                         drop_last=True)
    it = iter(loader)
    for _ in range(3):  # worker start-up
        next(it)
    n = max(1, min(samples // batch, len(loader) - 3))
    start = time.perf_counter()
    for _ in range(n):
        next(it)
    result["pipeline_loader_images_per_s_1_worker"] = n * batch / (time.perf_counter() - start)
    del it, loader
    return result


# ---- input pipeline on full-size photos ------------------------------------------------------------------
PHOTO_PATHS = ("baseline", "direct", "prepared")


class BaselinePhotos(MPIIDataset):
    """The sample path of commit bd07612, the reference of the speed-ups: each photo decoded whole and
    converted to RGB whole (``read_image``), then the same warp, float normalisation and target maps."""

    def load_source(self, index: int, factor: int) -> tuple[np.ndarray, int, bool]:
        return self.load_image(index), 1, False


def photo_datasets(root: str, prepared: str, res: int) -> dict[str, torch.utils.data.Dataset]:
    """What a DataLoader worker runs on each path: float samples (baseline), compact samples (direct:
    reduced decode; prepared: the crops), all with the default config's augmentation at ``res`` input."""
    out = res // 4
    cfg = load_config("default_config", {"input_res": res, "sigma": 2.0 * out / 64})
    pipeline = build_dataset("mpii", root, "train", cfg, train=True)
    kwargs = {k: getattr(pipeline, k) for k in ("input_res", "output_res", "sigma", "mean", "std", "augmentation",
                                                "seed")}
    return {"baseline": BaselinePhotos(root, "train", **kwargs),
            "direct": CompactSamples(pipeline),
            "prepared": CompactSamples(build_dataset("mpii_prepared", prepared, "train", cfg, train=True))}


def photo_keys(count: int, photos: int, start: int = 0) -> list[tuple[int, int]]:
    """``count`` (index, epoch) keys cycling over the photos, a new epoch (new augmentation) each cycle."""
    return [(i % photos, 1 + i // photos) for i in range(start, start + count)]


def single_process_rate(dataset, photos: int, samples: int, start: int) -> float:
    """Samples/s of ``dataset[key]`` over ``samples`` keys from the ``start``-th, in this process with one
    torch and one OpenCV thread, as in a worker."""
    threads, cv_threads = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    try:
        for key in photo_keys(8, photos, start):
            dataset[key]
        keys = photo_keys(samples, photos, start + 8)
        begin = time.perf_counter()
        for key in keys:
            dataset[key]
        return samples / (time.perf_counter() - begin)
    finally:
        torch.set_num_threads(threads)
        cv2.setNumThreads(cv_threads)


def loader_rate(dataset, photos: int, workers: int, batch: int, samples: int, pin: bool) -> float:
    """Samples/s through a real DataLoader with ``workers`` processes (collate, shared memory, hand-over to
    this process; pinned for CUDA) over ``samples``. Before timing: two batches per worker of start-up, then
    the batches the workers made meanwhile (``prefetch`` each), so that only batches made while timed count."""
    prefetch, steps = 4, max(1, samples // batch)
    warmup = (2 + prefetch) * workers
    keys = photo_keys((warmup + steps) * batch, photos)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, sampler=keys, num_workers=workers,
                                         worker_init_fn=worker_init, prefetch_factor=prefetch, pin_memory=pin)
    it = iter(loader)
    for _ in range(warmup):
        next(it)
    begin = time.perf_counter()
    for _ in range(steps):
        next(it)
    rate = steps * batch / (time.perf_counter() - begin)
    del it, loader
    return rate


def interleaved_rates(data: dict, photos: int, workers: list[int], batch: int, samples: int, rounds: int,
                      pin: bool) -> tuple[dict, dict, dict]:
    """Best single-process and DataLoader samples/s of each path over ``rounds`` rounds, each round timing every
    path once in turn, so that a load that comes and goes on a shared machine falls on all paths alike. A
    DataLoader that fails (a container's small /dev/shm: a worker killed by SIGBUS) gets None and its error."""
    single = {path: 0.0 for path in data}
    loader: dict = {path: {str(w): 0.0 for w in workers} for path in data}
    errors = {}
    for r in range(rounds):
        for path, ds in data.items():
            single[path] = max(single[path], single_process_rate(ds, photos, samples, r * (samples + 8)))
            for w in workers:
                if loader[path][str(w)] is None:
                    continue
                try:
                    loader[path][str(w)] = max(loader[path][str(w)], loader_rate(ds, photos, w, batch, samples, pin))
                except RuntimeError as err:
                    loader[path][str(w)], errors[f"{path}/{w}"] = None, str(err).strip().splitlines()[0]
    return single, loader, errors


def expand_rate(dataset, batch: int, device: torch.device, repeats: int) -> float:
    """Samples/s of ``expand_batch`` on ``device``: a compact batch's normalisation and target drawing, what
    the training step adds in exchange for the compact transport."""
    compact = default_collate([dataset[key] for key in photo_keys(batch, len(dataset))])
    if device.type == "cuda":
        compact = {k: v.pin_memory() for k, v in compact.items()}
    return _best_rate(lambda: expand_batch(compact, device), batch, device, warmup=2, iters=5, repeats=repeats)["rate"]


def measure_photo_pipeline(args: argparse.Namespace, device: torch.device, samples: int) -> dict:
    """Every figure of the ``photo_pipeline`` record (see the module docstring)."""
    repeats = args.repeats if args.repeats is not None else (1 if args.quick else 3)
    batch = 32 if args.batch_size is None else args.batch_size  # 0 was refused in main
    defaults = [1, resolve_workers(-1, device)]
    workers = sorted({int(w) for w in args.photo_workers.split(",")} if args.photo_workers else
                     {w for w in defaults if w > 0})
    with tempfile.TemporaryDirectory(prefix="photo-pipeline-") as tmp:
        root, prepared = os.path.join(tmp, "photos"), os.path.join(tmp, "prepared")
        made = write_photo_set(root, {"train": args.photos})
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "scripts.prepare_crops", "--dataset", "mpii", "--path", root,
                        "--out", prepared, "--splits", "train", "--set", f"input_res={args.pipeline_res}"],
                       check=True, stdout=subprocess.DEVNULL, cwd=REPO)
        prepare_seconds = time.perf_counter() - start
        data = photo_datasets(root, prepared, args.pipeline_res)
        direct = data["direct"].dataset
        factors = [decode_factor(direct.ann.box_sizes[i] * direct.random_transform(
            np.random.default_rng((direct.seed, epoch, i)))[1], direct.input_res) for i, epoch in
            photo_keys(samples, args.photos)]
        record = {
            "photos": args.photos, "photo_size": list(PHOTO_SIZE), "jpeg_quality": JPEG_QUALITY,
            "photo_kb_mean": made["bytes"] / args.photos / 1024,
            "box_side_px": {k: float(np.percentile(made["box_sides"], q)) for k, q in
                            (("p25", 25), ("median", 50), ("p75", 75))},
            "input_res": args.pipeline_res, "output_res": args.pipeline_res // 4,
            "augmentation": vars(direct.augmentation),
            "decode_factor_share": {str(f): factors.count(f) / len(factors) for f in (1, 2, 4, 8)},
            "prepared_side": int(data["prepared"].dataset.attrs["side"]), "prepare_script_seconds": prepare_seconds,
            "prepared_kb_per_sample": os.path.getsize(os.path.join(prepared, "train.npy")) / args.photos / 1024,
            "cpu_model": cpu_model_name(), "cpu_capability": cpu_capability(), "cores": usable_cores(),
            "shm_bytes": shutil.disk_usage("/dev/shm").total if os.path.isdir("/dev/shm") else None,
            "batch_size": batch, "samples_per_window": samples,
            "statistic": f"best of {repeats} windows, the paths taking turns",
        }
        single_threaded_opencv()  # as the trainer does before its workers fork
        record["single_process_samples_per_s"], loader, record["loader_errors"] = interleaved_rates(
            data, args.photos, workers, batch, samples, repeats, device.type == "cuda")
        record["device_expand_samples_per_s"] = expand_rate(data["direct"], batch, device, repeats)
    record["loader_samples_per_s"] = loader
    record["loader_samples_per_s_per_worker"] = {p: {w: _ratio(v, int(w)) for w, v in r.items()}
                                                 for p, r in loader.items()}
    single, base = record["single_process_samples_per_s"], loader["baseline"]
    record["speedup_per_worker"] = {path: {"single_process": single[path] / single["baseline"],
                                           **{f"loader_{w}": _ratio(loader[path][w], base[w]) for w in base}}
                                    for path in PHOTO_PATHS[1:]}
    return record


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def finish_photo_record(record: dict, args: argparse.Namespace) -> dict:
    """Print the photo-pipeline table and write the record (--json); returns it."""
    r = record["photo_pipeline"]
    record["load_average_at_end"] = _load_average()
    size = "x".join(map(str, r["photo_size"]))
    print(f"\ninput pipeline, {r['photos']} generated {size} JPEGs ({r['photo_kb_mean']:.0f} KB, box side median "
          f"{r['box_side_px']['median']:.0f} px), {r['input_res']} px in / {r['output_res']} px targets, batch "
          f"{r['batch_size']}; {r['cpu_model']}, {r['cores']} cores, {r['cpu_capability']}; load average "
          f"{record['load_average_at_start']} -> {record['load_average_at_end']}")
    widths = sorted(r["loader_samples_per_s"]["baseline"], key=int)
    print(f"{'samples/s per worker':22s} {'in process':>10s} " + " ".join(f"{f'loader x{w}':>10s}" for w in widths))
    for path in PHOTO_PATHS:
        per = r["loader_samples_per_s_per_worker"][path]
        print(f"{path:22s} {_fmt(r['single_process_samples_per_s'][path]):>10s} "
              + " ".join(f"{_fmt(per[w]):>10s}" for w in widths))
    for where, error in r["loader_errors"].items():
        print(f"loader {where} failed: {error}")
    shares = ", ".join(f"1/{f} {v:.0%}" for f, v in r["decode_factor_share"].items())
    print(f"direct path decodes at {shares}; device expansion {_fmt(r['device_expand_samples_per_s'])} "
          f"samples/s; prepared crops {r['prepared_side']} px, {r['prepared_kb_per_sample']:.0f} KB each")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        write_json(args.json, record)
        print(f"json: {args.json}")
    return record


# ---- models ----------------------------------------------------------------------------------------------
def synthetic_batch(batch: int, cfg, device: torch.device) -> dict:
    """Random batch shaped like the DataLoader's (pinned on CUDA, as with pin_memory)."""
    g = torch.Generator().manual_seed(0)
    res, out = cfg.input_res, cfg.output_res
    b = {
        "image": torch.randn(batch, 3, res, res, generator=g),
        "heatmaps": torch.rand(batch, NUM_JOINTS, out, out, generator=g),
        "occlusion": torch.rand(batch, NUM_JOINTS, out, out, generator=g) * 0.1,
        "annotated": torch.ones(batch, NUM_JOINTS),
        "joints": torch.rand(batch, NUM_JOINTS, 2, generator=g) * res,
        "affine": torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64).expand(batch, 2, 3).clone(),
        "ref_length": torch.full((batch,), res / 4.0, dtype=torch.float64),
    }
    if device.type == "cuda":
        b = {k: v.pin_memory() for k, v in b.items()}
    return b


class Setup:
    """Networks, optimisers and step context of one (method, mode), built by the trainer's own functions.

    "optimized" is exactly the trainer's set-up (the config's channels_last and resolved precision,
    fused/foreach optimisers) plus torch.compile on CUDA; "plain" is fp32, NCHW, no compile, PyTorch's
    default optimiser kernels."""

    def __init__(self, cfg, method: str, mode: str, device: torch.device, compile_on_cuda: bool):
        optimized = mode == "optimized"
        torch.manual_seed(0)
        cfg = resolve_for_dataset(cfg.with_overrides({"method": method}), MPII)  # the batches are MPII-shaped
        self.nets, _ = build_nets(cfg, NUM_JOINTS)
        self.compiled = optimized and compile_on_cuda and device.type == "cuda"
        if self.compiled:  # a fresh compile cache: no graph or recompile budget left over from another set-up
            torch._dynamo.reset()
        channels_last = optimized and cfg.channels_last
        place_nets(self.nets, device, channels_last=channels_last, compile_=self.compiled)
        self.opts = build_optimizers(self.nets, cfg, device, fast=optimized)  # plain: PyTorch's default kernels
        dtype = choose_precision(cfg.amp, device).dtype if optimized else None
        self.ctx = build_step_context(device, dtype, self.opts, cfg.grad_clip, channels_last)
        self.loss, self.adv = error_loss_params(cfg), adversarial_params(cfg)

    def step(self, batch: dict) -> dict:
        """One real training step, host->device copy included (as in the training loop)."""
        return train_step(self.nets, self.opts, to_device(batch, self.ctx), self.ctx, self.loss, self.adv)


def step_flops(cfg, method: str, batch: dict) -> int:
    """FLOPs of one training step (forward and backward of every network) as PyTorch's counter sees them,
    traced on the meta device: shapes only, no arithmetic."""
    meta = torch.device("meta")
    setup = Setup(cfg, method, "plain", meta, False)
    with FlopCounterMode(display=False) as counter:
        setup.step({k: v.to(meta) for k, v in batch.items()})
    return counter.get_total_flops()


def measure_models(cfg, batch_size: int, device: torch.device, args: argparse.Namespace, timing: dict) -> dict:
    """Training figures of both methods and modes (same run), with each one's warm-up seconds and peak
    memory; inference figures; FLOPs. With ``--time_budget``, each training figure gets an equal share of
    the budget left when it starts."""
    batch = synthetic_batch(batch_size, cfg, device)
    methods = args.methods.split(",")
    deadline = None if args.time_budget is None else time.perf_counter() + args.time_budget
    train, flops, warmup, memory, steps = {}, {}, {}, {}, {}
    for i, method in enumerate(methods):
        flops[method] = step_flops(cfg, method, batch)
        train[method], warmup[method], memory[method], steps[method] = {}, {}, {}, {}
        for j, mode in enumerate(MODES):
            left = len(MODES) * (len(methods) - i) - j  # training figures still to take, this one included
            share = None if deadline is None else (deadline - time.perf_counter()) / left
            _reset_peak_memory(device)
            with precision_of(mode):
                setup = Setup(cfg, method, mode, device, not args.no_compile)
                timed = _best_rate(lambda s=setup: s.step(batch), batch_size, device, **timing, budget_s=share)
                stats = setup.step(batch)
            if not all(torch.isfinite(v).all() for v in stats.values()):
                raise RuntimeError(f"{method}/{mode}: non-finite loss in the benchmark step")
            train[method][mode], warmup[method][mode] = timed["rate"], timed["warmup_s"]
            memory[method][mode], steps[method][mode] = _peak_memory_gib(device), timed["timed_steps"]
            del setup
    result = {"train_images_per_s": train, "flops_per_step": flops, "warmup_seconds": warmup,
              "peak_memory_gib": memory, "timed_steps": steps}
    if args.skip_inference:
        return result
    inference = {"batch": {}, "single": {}}
    for mode in MODES:
        for name, n in (("batch", batch_size), ("single", 1)):
            # A new G (and on CUDA a new compile after a dynamo reset) per batch size: a compiled G that has
            # seen batch_size first would either recompile with a dynamic batch dimension on seeing batch 1
            # (automatic dynamic shapes), or run a graph specialised for another shape; neither is what a
            # single-image deployment, which compiles for batch 1 alone, would run.
            with precision_of(mode):
                setup = Setup(cfg, "supervised", mode, device, not args.no_compile)
                g = setup.nets.generator.eval()
                images = place_images(batch["image"][:n], device, setup.ctx.channels_last)

                def forward(g=g, images=images, dtype=setup.ctx.dtype):
                    with torch.no_grad():
                        predict_heatmaps(g, images, None, device, dtype)

                inference[name][mode] = _best_rate(forward, n, device, **timing)["rate"]
            del setup, g
    return {**result, "inference_images_per_s": inference}


def precision_of(mode: str):
    """The context a mode runs in: "plain" is true fp32 (no TF32 anywhere), "optimized" the settings as set."""
    return strict_fp32() if mode == "plain" else contextlib.nullcontext()


def device_name(device: torch.device) -> str:
    """GPU name, or the CPU model name from /proc/cpuinfo."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_model_name()


def peak_tflops(args: argparse.Namespace, device: torch.device, dtype: torch.dtype | None) -> float | None:
    """--peak_tflops, else the table's bf16 peak when the optimized runs use bf16 on a known GPU."""
    if args.peak_tflops is not None:
        return args.peak_tflops
    if device.type != "cuda" or dtype != torch.bfloat16:
        return None
    return table_peak_tflops(torch.cuda.get_device_name(device))


def table_peak_tflops(name: str) -> float | None:
    """Dense bf16 peak (TFLOP/s) of the GPU named ``name`` (torch.cuda.get_device_name), or None if unknown."""
    return next((peak for pattern, peak in PEAK_BF16_TFLOPS if re.search(pattern, name, re.IGNORECASE)), None)


def _load_average() -> list[float] | None:
    """1/5/15-minute load averages: other processes on the machine skew CPU figures."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _fmt(v) -> str:
    if v is None:
        return "-"
    return f"{v:,.1f}" if v >= 10 else f"{v:.3g}"


def print_table(r: dict) -> None:
    """Human-readable summary of the result record."""
    print(f"\n{r['device']} ({r['device_name']}), torch {r['torch']}, config {r['config']}, "
          f"batch {r['batch_size']}, input {r['input_res']}, {r['threads']} threads, "
          f"malloc tuned: {r['malloc_tuned']}, load average {r['load_average_at_start']} at start")
    print(f"CPU capability {r['cpu_capability']}; optimized: {r['precision']['optimized']} ({r['precision_reason']}), "
          f"{'channels_last' if r['channels_last'] else 'NCHW'}; plain: fp32, NCHW")
    rows = []
    if "pipeline_images_per_s_per_worker" in r:
        res = r["pipeline_res"]
        rows += [(f"pipeline, 1 worker, {res} px ({r['pipeline_dataset']})", r["pipeline_images_per_s_per_worker"],
                  None, None),
                 ("pipeline, 1 worker, image cache on", r["pipeline_cached_images_per_s_per_worker"], None, None),
                 ("pipeline, real DataLoader, 1 worker", r["pipeline_loader_images_per_s_1_worker"], None, None)]
    for m in r["train_images_per_s"]:
        t = r["train_images_per_s"][m]
        rows.append((f"train {m}", t["plain"], t["optimized"], t["optimized"] / t["plain"]))
    for k in ("batch", "single") if "inference_images_per_s" in r else ():
        t = r["inference_images_per_s"][k]
        rows.append((f"inference, {'batch' if k == 'batch' else 'single image'}", t["plain"], t["optimized"],
                     t["optimized"] / t["plain"]))
    print(f"{'images/s':44s} {'plain':>10s} {'optimized':>10s} {'speed-up':>9s}")
    for name, a, b, s in rows:
        print(f"{name:44s} {_fmt(a):>10s} {_fmt(b):>10s} {(f'{s:.2f}x' if s else ''):>9s}")
    for m in r["train_images_per_s"]:
        frac = r["peak_fraction"][m]
        print(f"{m}: {r['flops_per_image'][m] / 1e9:.1f} GFLOP/image, {_fmt(r['tflops_achieved'][m])} TFLOP/s "
              f"optimized" + (f" = {100 * frac:.1f}% of {r['peak_tflops']} TFLOP/s peak" if frac else ""))
        warm, mem = r["warmup_seconds"][m], r["peak_memory_gib"][m]
        print(f"{m}: warm-up {warm['plain']:.1f} s plain, {warm['optimized']:.1f} s optimized"
              + (" (compile included)" if r["compile"] else "")
              + (f"; peak memory {mem['plain']:.2f} GiB plain, {mem['optimized']:.2f} GiB optimized"
                 if mem["optimized"] is not None else ""))


@exit_on_user_error
def main(argv: list[str] | None = None) -> dict:
    """Run every measurement; returns the result record (also printed, and written with --json)."""
    args = parse_args(argv)
    replaced = check_replaceable([args.json], [], "--json", args.overwrite) if args.json else []
    device = use_device(resolve_device(args.device))
    if args.threads is not None:
        torch.set_num_threads(max(1, args.threads))
    cfg = load_config(preset_name(args.config), parse_overrides(args.set))
    batch_size = cfg.batch_size if args.batch_size is None else args.batch_size  # 0 is refused, not the default
    if batch_size < 1:
        raise UserInputError(f"--batch_size: must be at least 1, got {batch_size}")
    if args.data is not None and not os.path.isfile(os.path.join(args.data, "joints.mat")):
        # only the default may fall back to synthetic data: a folder the user named is measured or refused
        raise UserInputError(f"--data: no joints.mat in {args.data}; expected an LSPET-layout folder "
                             f"(lspet-mini, lspet-9k)")
    if args.time_budget is not None and not args.time_budget > 0:
        raise UserInputError(f"--time_budget {args.time_budget:g}: expected a positive number of seconds")
    unknown = set(args.methods.split(",")) - set(METHODS)
    if unknown:
        raise UserInputError(f"--methods: unknown {sorted(unknown)}; valid: {', '.join(METHODS)}")
    tuned = False if args.no_malloc_tuning else tune_malloc()
    env_set = all(k in os.environ for k in MALLOC_ENV)
    if not tuned and not env_set and sys.platform.startswith("linux"):
        print(f"hint: {' and '.join(MALLOC_ENV)} are unset and malloc is not tuned: on CPU, glibc hands out "
              "fresh pages for every large buffer (10-15% of a 256 px training step, half the cached pipeline); "
              "run with MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736 or without --no_malloc_tuning")
    seed_everything(0, deterministic=False)  # also cudnn.benchmark on CUDA, as in training
    timing = {"warmup": args.warmup if args.warmup is not None else (2 if args.quick else 3),
              "iters": args.iters if args.iters is not None else (2 if args.quick else 10),
              "repeats": args.repeats if args.repeats is not None else (1 if args.quick else 3)}
    samples = args.pipeline_samples or (150 if args.quick else 600)
    precision = choose_precision(cfg.amp, device)

    record = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": str(device), "device_name": device_name(device), "torch": torch.__version__,
        "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
        "config": "config." + preset_name(args.config), "overrides": args.set, "batch_size": batch_size,
        "input_res": cfg.input_res, "num_stacks": cfg.num_stacks, "channels": cfg.channels,
        "cpu_capability": cpu_capability(),
        "optimized_dtype": str(precision.dtype or torch.float32).removeprefix("torch."),
        "precision": {"plain": "fp32", "optimized": precision_name(precision.dtype, device)},
        "precision_reason": precision.reason, "channels_last": cfg.channels_last,
        "compile": device.type == "cuda" and not args.no_compile,
        "malloc_tuned": tuned, "malloc_env": {k: os.environ.get(k) for k in MALLOC_ENV},
        "timing": {**timing, "statistic": "best window", "time_budget": args.time_budget}, "quick": args.quick,
        "load_average_at_start": _load_average(),
    }
    if args.photo_pipeline:  # the input pipeline alone
        record["photo_pipeline"] = measure_photo_pipeline(args, device, samples)
        return finish_photo_record(record, args)
    if not args.skip_pipeline:
        record["pipeline_res"] = args.pipeline_res
        record.update(measure_pipeline(args, samples))
    record.update(measure_models(cfg, batch_size, device, args, timing))
    peak = peak_tflops(args, device, precision.dtype)
    record["peak_tflops"] = peak
    record["flops_per_image"] = {m: f / batch_size for m, f in record["flops_per_step"].items()}
    record["tflops_achieved"] = {m: record["flops_per_image"][m] * record["train_images_per_s"][m]["optimized"] / 1e12
                                 for m in record["flops_per_step"]}
    record["peak_fraction"] = {m: (v / peak if peak else None) for m, v in record["tflops_achieved"].items()}
    record["load_average_at_end"] = _load_average()
    record["speedup"] = {m: record["train_images_per_s"][m]["optimized"] / record["train_images_per_s"][m]["plain"]
                         for m in record["flops_per_step"]}
    print_table(record)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        if replaced:
            print(replacing_note(replaced))
        write_json(args.json, record)
        print(f"json: {args.json}")
    return record


if __name__ == "__main__":
    main()
