"""What ``scripts/gpu-acceptance.sh`` needs to know before it runs its steps: the modules this box lacks,
whether torch.compile works here, and a time plan from measured step times.

    python -m scripts.acceptance_plan modules                      # missing import names, one line
    python -m scripts.acceptance_plan probe --device cuda --out OUT  # OUT/probe.json, OUT/compile.env
    python -m scripts.acceptance_plan plan --out OUT --budget 450 --elapsed 60 --calibration OUT/calib.json \\
        --calibration_seconds 40 --config config.gpu_lspet --data gpu-data/lspet-mini   # OUT/plan.json, plan.env

The plan: the calibration (``scripts/benchmark.py`` on the training preset, compile included) gives the
start-up of a process, the warm-up of the first steps (torch.compile, cuDNN autotuning) and one warm step.
From these and the time left, every later step gets its planned seconds (``plan_chain``): training runs and
the benchmark's timed windows are sized to their share (steps allowed = budget / step time, warm-ups
counted), test runs from the validation size. The shell turns the planned seconds into deadlines
(``runtime.budget.deadlines``): time a step leaves unused passes to the ones after it.

Run as a module from the repository root (as the shell script does); ``modules`` needs only the standard
library (the other subcommands import torch when they run), so it answers on a box where the requirements are
not installed yet.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import shlex
import sys
import time
from dataclasses import asdict, dataclass, replace

from runtime.budget import FORWARD_SHARE, StepTiming, TrainingPlan, plan_runs
from utils.errors import UserInputError, exit_on_user_error

# import name of every module a step imports (requirements.txt and pytest from requirements-dev.txt)
REQUIRED_MODULES = ("torch", "numpy", "scipy", "cv2", "h5py", "tqdm", "matplotlib", "pytest")
# How the time left after the calibration is shared among the steps whose work has no measured size (the CUDA
# tests, the input pipeline) or is sized to fit (the benchmark's windows, the training runs); the test runs
# and the summary are planned from measurements first. A step that does not run gives its share to the rest.
SHARES = {"cuda-tests": 0.20, "benchmark-model": 0.30, "pipeline": 0.08, "training": 0.42}
PLAN_MARGIN = 1.25  # planned seconds of a sized step = its estimate x this, for what the estimate leaves out
MAX_FLOOR_SHARE = 0.6  # the least a step needs (``floors``) may raise its share up to this much of the time left
EPOCH_OVERHEAD_S = 2.0  # per epoch: the DataLoader starts its workers again (the trainer does not keep them)


def missing_modules(names: tuple[str, ...] = REQUIRED_MODULES) -> list[str]:
    """The import names in ``names`` that cannot be found here (nothing is imported)."""
    return [n for n in names if importlib.util.find_spec(n) is None]


@dataclass(frozen=True)
class Calibration:
    """The training preset measured by the calibration step, per method."""

    batch: int
    timings: dict[str, StepTiming]  # "supervised" / "adversarial" -> start-up, warm-up, warm step (optimized)
    # the same eager and in true fp32 ("plain"): no compile warm-up, and at least as slow as the trainer's own
    # eager step, so an upper bound for a run without compile; empty when the optimized set-up did not compile
    eager: dict[str, StepTiming]


def with_input_pipeline(cal: Calibration, sample_s: float, workers: int, val_passes: int = 1) -> Calibration:
    """The calibration with the input pipeline's time per batch: ``sample_s`` seconds per sample in one worker,
    ``workers`` of them preparing batches while the device computes; with none, the training process
    prepares each batch itself, between its steps. ``val_passes``: 2 when validation runs the flip test."""
    load = cal.batch * sample_s

    def fed(t: StepTiming) -> StepTiming:
        if workers == 0:
            return replace(t, step_s=t.step_s + load, val_passes=val_passes)
        return replace(t, batch_load_s=load / workers, val_passes=val_passes)

    return Calibration(cal.batch, {m: fed(t) for m, t in cal.timings.items()},
                       {m: fed(t) for m, t in cal.eager.items()})


def calibration_from_benchmark(record: dict, seconds: float) -> Calibration:
    """Read a ``scripts/benchmark.py`` record of the training preset, which took ``seconds`` in all: the
    optimized figures are the trainer's own set-up. Start-up is what the figures do not account for (imports,
    building networks, FLOP counting, process exit), shared by every method."""
    batch = int(record["batch_size"])
    rates, warmups = record["train_images_per_s"], record["warmup_seconds"]
    steps = record["timed_steps"]
    accounted = 0.0
    for method, by_mode in rates.items():
        for mode, rate in by_mode.items():
            accounted += warmups[method][mode] + steps[method][mode] * batch / rate
    startup = max(1.0, seconds - accounted)
    optimized, plain = ({m: StepTiming(startup, warmups[m][mode], batch / by_mode[mode])
                         for m, by_mode in rates.items()} for mode in ("optimized", "plain"))
    return Calibration(batch, optimized, plain if record.get("compile") else {})


@dataclass(frozen=True)
class ChainPlan:
    """Planned seconds of every step after the calibration, in the order they run, and the sized work."""

    seconds: dict[str, float]
    bench_time_budget: float  # scripts/benchmark.py --time_budget of the model benchmark
    supervised: TrainingPlan | None
    adversarial: TrainingPlan | None  # epochs from the supervised snapshot
    snapshot: int  # supervised epoch the adversarial run starts from (0: no adversarial run)
    skipped: dict[str, str]  # step -> why it does not run
    train_eager: bool = False  # the training runs do without torch.compile: its warm-up would cost more


def size_training(budget_s: float, timings: dict[str, StepTiming], batch: int, train_size: int, val_size: int,
                  min_epochs: int, max_epochs: int) -> tuple[list[TrainingPlan] | None, str | None]:
    """The supervised run and, when it is calibrated and fits too, the adversarial half (``plan_runs``); with
    why there is no adversarial half (None when there is one)."""
    sup = timings["supervised"]
    if "adversarial" not in timings:
        return (plan_runs(budget_s, [sup], batch, train_size, val_size, min_epochs, max_epochs, EPOCH_OVERHEAD_S),
                "adversarial step not calibrated (this profile trains supervised only)")
    both = plan_runs(budget_s, [sup, timings["adversarial"]], batch, train_size, val_size, min_epochs, max_epochs,
                     EPOCH_OVERHEAD_S)
    if both:
        return both, None
    alone = plan_runs(budget_s, [sup], batch, train_size, val_size, min_epochs, max_epochs, EPOCH_OVERHEAD_S)
    return alone, (f"budget: {PLAN_MARGIN * budget_s:.0f} s hold {min_epochs} supervised epochs but not the "
                   f"adversarial half as well")


def _trained(runs: list[TrainingPlan] | None) -> tuple[int, int, int]:
    """How much training ``runs`` do, to compare two plans: runs, then epochs x samples of the first."""
    return (len(runs), runs[0].epochs * runs[0].samples, runs[0].samples) if runs else (0, 0, 0)


def test_seconds(timing: StepTiming, batch: int, val_size: int) -> float:
    """test.py on the validation split with the flip test (two forward passes per batch), eager."""
    return PLAN_MARGIN * (timing.startup_s + 2 * math.ceil(val_size / batch) * FORWARD_SHARE * timing.step_s)


TRAINING_STEPS = ("train-supervised", "test-supervised", "train-adversarial", "test-adversarial")


def floors(sup: StepTiming, bench_graph_ratio: float) -> dict[str, float]:
    """The least the steps without a size need, from the calibrated training step (its start-up ``S`` and
    warm-up ``W``, compile included): the benchmark compiles its G for the supervised step, about
    ``bench_graph_ratio`` (its stacks over the training preset's) times ``W``, then for the adversarial step
    after a fresh start of the compiler, which finds G's kernels in inductor's on-disk cache and compiles P
    and C: about half that again. The CUDA tests start about four processes' worth of imports and runs and
    compile nets far smaller than the preset, together about one ``W``."""
    return {"benchmark-model": PLAN_MARGIN * (sup.startup_s + 1.5 * bench_graph_ratio * sup.warmup_s),
            "cuda-tests": PLAN_MARGIN * (4 * sup.startup_s + sup.warmup_s)}


def plan_chain(left_s: float, cal: Calibration | None, train_size: int, val_size: int, min_epochs: int,
               max_epochs: int, has_data: bool, has_pipeline: bool, bench_cap_s: float,
               bench_graph_ratio: float = 1.0) -> ChainPlan:
    """Share ``left_s`` seconds (the budget minus what has run) among the steps to come: the summary and the
    test runs first (from measurements), then ``SHARES`` of the rest, each raised to the least it needs
    (``floors``; the training runs give up what that takes); the training runs and the benchmark's windows
    are sized to their shares. ``cal`` None: the calibration failed, so nothing can be sized and only the
    steps without a size run. ``has_data``: the real photos are there (else no training or test steps);
    ``has_pipeline``: the pipeline benchmark can run; ``bench_cap_s``: at most this much --time_budget for the
    benchmark (the QUICK chain keeps it short); ``bench_graph_ratio``: the benchmarked G's stacks over the
    training preset's."""
    skipped: dict[str, str] = {}
    if cal is None:
        skipped.update({k: "no calibration (logs/calibrate.log)" for k in TRAINING_STEPS})
        has_data = False
    elif not has_data:
        skipped.update({k: "no data (DATA has no joints.mat)" for k in TRAINING_STEPS})
    if not has_pipeline:
        skipped["pipeline"] = "scripts/benchmark.py has no --photo_pipeline flag (issue 25, point 4)"
    # without a calibration, a process's start-up is taken as a tenth of what is left
    sup = cal.timings["supervised"] if cal else StepTiming(left_s / 10, 0.0, 1.0)
    summary = sup.startup_s
    tests = test_seconds(sup, cal.batch, val_size) if has_data else 0.0
    shares = {k: v for k, v in SHARES.items() if (k != "training" or has_data) and (k != "pipeline" or has_pipeline)}
    rest = max(0.0, left_s - summary - 2 * tests)
    share = {k: rest * v / sum(shares.values()) for k, v in shares.items()}
    for step, floor in floors(sup, bench_graph_ratio).items():
        share[step] = max(share[step], min(floor, MAX_FLOOR_SHARE * rest))
    over = sum(share.values()) - rest
    if "training" in share:  # the training runs are sized to what is left
        share["training"] = max(0.0, share["training"] - over)
    elif over > 0:
        share = {k: v * rest / (rest + over) for k, v in share.items()}
    supervised = adversarial = None
    train_eager = False
    if has_data:
        budget = share["training"] / PLAN_MARGIN
        runs, why = size_training(budget, cal.timings, cal.batch, train_size, val_size, min_epochs, max_epochs)
        if cal.eager:
            eager_runs, eager_why = size_training(budget, cal.eager, cal.batch, train_size, val_size, min_epochs,
                                                  max_epochs)
            if _trained(eager_runs) > _trained(runs):  # compile's warm-up costs more than it saves in this run
                runs, why, train_eager = eager_runs, eager_why, True
        if runs is None:
            skipped["train-supervised"] = (f"budget: {min_epochs} epochs of one batch need more than the "
                                           f"{share['training']:.0f} s of the training runs here")
            skipped["test-supervised"] = skipped["train-adversarial"] = "no supervised run"
        else:
            supervised, adversarial = runs[0], (runs[1] if len(runs) > 1 else None)
            if why:
                skipped["train-adversarial"] = why
        if adversarial is None:
            skipped["test-adversarial"] = "no adversarial run"
    sup_s = PLAN_MARGIN * supervised.seconds if supervised else 0.0
    adv_s = PLAN_MARGIN * adversarial.seconds if adversarial else 0.0
    snapshot = supervised.epochs - adversarial.epochs if adversarial else 0
    seconds = {"cuda-tests": share["cuda-tests"], "benchmark-model": share["benchmark-model"],
               "pipeline": share.get("pipeline", 0.0),
               "train-supervised": sup_s, "test-supervised": tests if supervised else 0.0,
               "train-adversarial": adv_s, "test-adversarial": tests if adversarial else 0.0,
               "summary": summary}
    if has_data:  # what the training and test runs leave of their time goes to the benchmark
        seconds["benchmark-model"] += share["training"] - sup_s - adv_s + 2 * tests - seconds["test-supervised"] \
            - seconds["test-adversarial"]
    bench = max(1.0, min(bench_cap_s, seconds["benchmark-model"] / PLAN_MARGIN - sup.startup_s))
    return ChainPlan(seconds, bench, supervised, adversarial, snapshot, skipped, train_eager)


def shell_name(step: str) -> str:
    """``train-supervised`` -> ``PLAN_train_supervised``: the shell variable of a step's planned seconds."""
    return "PLAN_" + step.replace("-", "_")


def lr_drop(epochs: int, snapshot: int) -> int:
    """The epoch after which the supervised run's lr drops x0.1: after four fifths of its epochs (as
    scripts/reproduce-lspet-mini.sh), never before the snapshot the adversarial run starts from."""
    return max(epochs * 4 // 5, snapshot + 1, 1)


def plan_env(plan: ChainPlan) -> str:
    """plan.env: shell assignments the acceptance script sources (every value quoted)."""
    sup, adv = plan.supervised, plan.adversarial
    drop = lr_drop(sup.epochs if sup else 0, plan.snapshot)
    values = {shell_name(k): str(math.ceil(v)) for k, v in plan.seconds.items()}
    values.update({"BENCH_TIME_BUDGET": f"{plan.bench_time_budget:.1f}",
                   "TRAIN_EPOCHS": str(sup.epochs if sup else 0), "TRAIN_SAMPLES": str(sup.samples if sup else 0),
                   "DROP": str(drop), "SNAPSHOT": str(plan.snapshot),
                   "SNAPSHOT_EPOCHS": f"[{plan.snapshot}]" if plan.snapshot else "[]",
                   "ADV_EPOCHS": str(adv.epochs if adv else 0), "ADV_DROP": str(max(1, drop - plan.snapshot)),
                   "TRAIN_EAGER": str(int(plan.train_eager))})
    values.update({"SKIP_" + k.replace("-", "_"): why for k, why in plan.skipped.items()})
    return "".join(f"{k}={shlex.quote(v)}\n" for k, v in values.items())


def _write_text(path: str, text: str) -> None:
    """Write ``path`` whole or not at all (a temporary file renamed over it)."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def run_probe(args: argparse.Namespace) -> int:
    """Probe torch.compile on --device; write probe.json and compile.env (COMPILE_WORKS, COMPILE_REASON)."""
    import torch

    from runtime.device import compile_problem, resolve_device

    device = resolve_device(args.device)
    if device.type == "cuda":
        device = torch.device("cuda", device.index if device.index is not None else torch.cuda.current_device())
    start = time.perf_counter()
    problem = compile_problem(str(device), args.timeout)
    record = {"device": str(device), "compile": problem is None, "reason": problem,
              "seconds": round(time.perf_counter() - start, 2)}
    _write_text(os.path.join(args.out, "probe.json"), json.dumps(record, indent=1) + "\n")
    _write_text(os.path.join(args.out, "compile.env"),
                f"COMPILE_WORKS={int(problem is None)}\nCOMPILE_REASON={shlex.quote(problem or '')}\n")
    print(f"torch.compile on {device}: " + ("works" if problem is None else f"cannot work ({problem})")
          + f", probed in {record['seconds']} s")
    return 0


@dataclass(frozen=True)
class DataShape:
    """The training data as this box sees it."""

    train: int  # train samples per epoch (capped)
    val: int  # val samples (capped)
    sample_s: float  # seconds one DataLoader worker takes for one augmented train sample
    workers: int  # DataLoader workers of the preset
    val_passes: int  # forward passes per validation batch: 2 with the preset's flip test


def measure_data(config: str, data: str, max_train: int | None, max_val: int | None, samples: int = 64) -> DataShape:
    """Train and val sizes of the lspet-layout folder ``data`` under the preset ``config`` (capped), and the time
    of ``samples`` augmented train samples taken as one worker takes them (one torch and one OpenCV thread,
    glibc tuned), after a few untimed ones."""
    import cv2
    import torch

    from config import load_config, preset_name
    from datasets import build_dataset
    from runtime.system import tune_malloc

    cfg = load_config(preset_name(config))
    train_set = build_dataset("lspet", data, "train", cfg, train=True)
    train, val = len(train_set), len(build_dataset("lspet", data, "val", cfg, train=False))
    tune_malloc()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    keys = [(i % train, 1) for i in range(samples + 4)]
    for key in keys[:4]:
        train_set[key]
    start = time.perf_counter()
    for key in keys[4:]:
        train_set[key]
    sample_s = (time.perf_counter() - start) / samples
    return DataShape(min(train, max_train or train), min(val, max_val or val), sample_s, cfg.workers,
                     2 if cfg.flip_test else 1)


def run_plan(args: argparse.Namespace) -> int:
    """Read the calibration, plan the rest of the chain, write plan.json and plan.env, print the plan."""
    cal = None
    if os.path.isfile(args.calibration):
        try:
            with open(args.calibration) as f:
                cal = calibration_from_benchmark(json.load(f), args.calibration_seconds)
        except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError) as err:
            raise UserInputError(f"--calibration {args.calibration}: not a scripts/benchmark.py record ({err})") \
                from None
    has_data = os.path.isfile(os.path.join(args.data, "joints.mat"))
    shape = measure_data(args.config, args.data, args.max_train, args.max_val) if has_data else None
    if cal is not None and shape is not None:
        cal = with_input_pipeline(cal, shape.sample_s, shape.workers, shape.val_passes)
    train_size, val_size = (shape.train, shape.val) if shape else (0, 0)
    from config import load_config, preset_name

    ratio = load_config(preset_name(args.bench_config)).num_stacks / load_config(preset_name(args.config)).num_stacks
    plan = plan_chain(args.budget - args.elapsed, cal, train_size, val_size, args.min_epochs, args.max_epochs,
                      has_data, args.pipeline, args.bench_cap, ratio)
    document = {"budget_s": args.budget, "elapsed_s": args.elapsed, "calibration_s": args.calibration_seconds,
                "batch": cal.batch if cal else None,
                "timings": {k: asdict(v) for k, v in cal.timings.items()} if cal else {},
                "train_size": train_size, "val_size": val_size, "data": asdict(shape) if shape else None,
                "planned_s": plan.seconds,
                "bench_time_budget_s": plan.bench_time_budget,
                "supervised": asdict(plan.supervised) if plan.supervised else None,
                "adversarial": asdict(plan.adversarial) if plan.adversarial else None,
                "snapshot": plan.snapshot, "train_eager": plan.train_eager, "skipped": plan.skipped}
    _write_text(os.path.join(args.out, "plan.json"), json.dumps(document, indent=1) + "\n")
    _write_text(os.path.join(args.out, "plan.env"), plan_env(plan))
    for name, timing in (cal.timings if cal else {}).items():
        print(f"measured {name}: start-up {timing.startup_s:.1f} s, warm-up {timing.warmup_s:.1f} s, "
              f"step {timing.step_s * 1000:.1f} ms at batch {cal.batch}, input pipeline "
              f"{timing.batch_load_s * 1000:.1f} ms per batch")
    if shape:
        print(f"data: {shape.train} train / {shape.val} val samples, {shape.sample_s * 1000:.2f} ms per sample "
              f"in one worker, {shape.workers} workers")
    for step, seconds in plan.seconds.items():
        print(f"{step:18s} {seconds:7.0f} s" + (f"  skipped: {plan.skipped[step]}" if step in plan.skipped else ""))
    for name, run in (("supervised", plan.supervised), ("adversarial", plan.adversarial)):
        if run:
            print(f"{name}: {run.epochs} epochs of {run.samples} samples, about {run.seconds:.0f} s"
                  + (", eager: compile's warm-up would cost more than it saves here" if plan.train_eager else ""))
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The three subcommands and their flags."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("modules", help="print the required modules that are missing here (space-separated)")
    probe = sub.add_parser("probe", help="does torch.compile work on --device?")
    probe.add_argument("--device", default="cuda", help="cpu | cuda | cuda:N")
    probe.add_argument("--out", required=True, help="folder for probe.json and compile.env")
    probe.add_argument("--timeout", type=float, default=180.0, help="seconds the probe may take")
    plan = sub.add_parser("plan", help="plan the steps after the calibration")
    plan.add_argument("--out", required=True, help="folder for plan.json and plan.env")
    plan.add_argument("--budget", type=float, required=True, help="seconds for the whole chain")
    plan.add_argument("--elapsed", type=float, required=True, help="seconds the chain has run so far")
    plan.add_argument("--calibration", required=True, help="scripts/benchmark.py JSON of the training preset")
    plan.add_argument("--calibration_seconds", type=float, required=True, help="wall time of that benchmark")
    plan.add_argument("--config", required=True, help="the training preset")
    plan.add_argument("--bench_config", default="config.newell8", help="the preset the model benchmark times")
    plan.add_argument("--data", required=True, help="the lspet-layout photos the training reads")
    plan.add_argument("--max_train", type=int, default=None, help="train samples per epoch at most")
    plan.add_argument("--max_val", type=int, default=None, help="val samples at most")
    plan.add_argument("--min_epochs", type=int, default=3, help="fewer samples per epoch before fewer epochs")
    plan.add_argument("--max_epochs", type=int, default=40, help="epochs at most")
    plan.add_argument("--bench_cap", type=float, default=math.inf, help="--time_budget of the benchmark at most")
    plan.add_argument("--no_pipeline", dest="pipeline", action="store_false",
                      help="the pipeline benchmark will not run")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Dispatch a subcommand; user errors end with one line (exit code 2)."""
    args = parse_args(argv)
    if args.command == "modules":
        print(" ".join(missing_modules()))
        return 0
    return exit_on_user_error(run_probe if args.command == "probe" else run_plan)(args)


if __name__ == "__main__":
    sys.exit(main())
