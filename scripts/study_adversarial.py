"""Do P and C help G at equal G updates? The arms of README "lspet-9k arms", trained, scored and summarised.

For each seed: the supervised run S1 trains --epochs epochs from scratch and keeps its epoch-E snapshot
(--snapshot_epoch); every other arm continues that snapshot to the same final epoch, changing one thing:

    S1         the supervised run itself (one error-loss update of G per batch)
    S2         Algorithm 1 with P and C off: two error-loss updates of G per batch
    A          Algorithm 1 with P and C at the default (the paper's method as it states its intent)
    A-literal  A with Eq. 1's literal error-loss scale (optional: --arms S2 A A-literal)

    bash scripts/study-adversarial.sh                         # everything not done yet; again after a stop
    bash scripts/study-adversarial.sh --summary_only          # rebuild the summary from the records

A run whose record <results>/<arm>-s<seed>.json exists is skipped; a run directory holding last.pt is resumed
(--resume: bit-exact); anything else starts afresh (--overwrite moves a half-started run's files aside, nothing
is deleted). Every final last.pt (never a best-on-val one) is tested with test.py (flip test on) and recorded
with its per-image hits, resolved config, machine, ISA, precision and times; its G is exported weights-only
in fp16 (scripts/export.py), seed 0's into <results>/weights/<arm>-s0.pt, and the summary gives the sha256 of
every export. The arms start with train_adversarial.py --continue_from <S1 run>/epoch_<E>.pt: the supervised
run continued exactly (G's optimiser and schedule, the data stream from epoch E + 1), with only the arm's own
settings changed. Nothing here is chosen on val scores: the decision rule is fixed in the README.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass

from utils.errors import UserInputError, exit_on_user_error

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the trainers and test.py run from here

# arm -> (what it is, train_adversarial.py flags beside --continue_from); S1 is the supervised run itself
ARMS = {
    "S1": ("supervised: one error-loss update of G per batch", []),
    "S2": ("Algorithm 1 with P and C off: two error-loss updates of G per batch",
           ["--no_pose_disc", "--no_conf_disc", "--set", "g_error_step=True"]),
    "A": ("Algorithm 1 with P and C at the default strength and form",
          ["--set", "g_error_step=True", "--set", "mse_scale=pixel_mean", "--set", "g_adv_form=paper"]),
    "A-literal": ("A with Eq. 1's literal error-loss scale: P and C's push thousands of times weaker",
                  ["--set", "g_error_step=True", "--set", "mse_scale=eq1_literal", "--set", "g_adv_form=paper"]),
}
# (arm, baseline) pairs the decision rule reads: A - S2 is the paper's claim at equal G updates, S2 - S1 the
# second error-loss update per batch, A-literal - S2 the literal-scale reading
CONTRASTS = (("A", "S2"), ("S2", "S1"), ("A-literal", "S2"))
CONTINUE_FLAG = "--continue_from"


@dataclass(frozen=True)
class Run:
    """One run of the study: arm ``arm`` of seed ``seed`` in ``<runs>/<name>``."""

    arm: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.arm}-s{self.seed}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="../shared/data/lspet-9k", help="the lspet-9k folder (joints.mat, images/)")
    p.add_argument("--config", default="config.cpu_small", help="preset of every run")
    p.add_argument("--epochs", type=int, default=32, help="final epoch of every arm (epochs of G in all)")
    p.add_argument("--snapshot_epoch", type=int, default=16, help="E: the arms continue S1 from its epoch E")
    p.add_argument("--drop", type=int, default=26, help="epoch after which lr x 0.1 (every arm: one schedule)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--arms", nargs="*", default=["S2", "A"], help=f"arms beside S1, of {', '.join(ARMS)}")
    p.add_argument("--device", default="cpu")
    p.add_argument("--checkpoint_every", type=int, default=100, help="last.pt every N steps too (stops lose less)")
    p.add_argument("--results", default="results/lspet-9k-arms", help="records, summary, curves and weights")
    p.add_argument("--runs", default="trainmodel/study-lspet-9k-arms", help="run directories")
    p.add_argument("--outputs", default="outputs/study-lspet-9k-arms", help="test.py outputs and exports")
    p.add_argument("--train_samples", type=int, default=None, help="first N train photos only (smoke tests)")
    p.add_argument("--val_samples", type=int, default=None, help="first N val photos only (smoke tests)")
    p.add_argument("--margin", type=float, default=0.5, help="decision rule: 'no effect' within +-margin points")
    p.add_argument("--bootstrap", type=int, default=10000, help="bootstrap draws of each interval")
    p.add_argument("--summary_only", action="store_true", help="only rebuild the summary from the records")
    args = p.parse_args(argv)
    unknown = [a for a in args.arms if a not in ARMS or a == "S1"]
    if unknown:
        raise UserInputError(f"--arms: unknown {', '.join(unknown)}; valid: {', '.join(a for a in ARMS if a != 'S1')}"
                             " (S1 is always run: the other arms continue it)")
    if not 1 <= args.snapshot_epoch < args.epochs or not args.snapshot_epoch < args.drop:
        raise UserInputError(f"--snapshot_epoch: need 1 <= E < --epochs and E < --drop (the lr drop comes after the "
                             f"arms start), got E={args.snapshot_epoch}, --epochs {args.epochs}, --drop {args.drop}")
    if not args.summary_only and not os.path.isfile(os.path.join(args.data, "joints.mat")):
        raise UserInputError(f"--data: {args.data} has no joints.mat (expected the lspet-9k folder)")
    return args


def data_flags(args: argparse.Namespace) -> list[str]:
    """The flags every training run and its continuations share: data, preset, seed-independent schedule."""
    flags = ["--dataset", "lspet", "--path", args.data, "--train_split", "train", "--config", args.config,
             "--device", args.device, "--save_root", args.runs, "--epochs", str(args.epochs),
             "--set", f"lr_milestones=[{args.drop}]", "--set", f"checkpoint_every={args.checkpoint_every}",
             # one precision for every run and arm, whatever CPU a later session resumes on: the contrasts must
             # not mix bf16 and fp32 runs (bf16 is native on AVX512-BF16/AMX, emulated and slower elsewhere)
             "--set", "amp=bf16"]
    if args.train_samples:
        flags += ["--max_train_samples", str(args.train_samples)]
    if args.val_samples:
        flags += ["--max_val_samples", str(args.val_samples)]
    return flags


def train_command(run: Run, args: argparse.Namespace) -> list[str]:
    """The trainer call that starts, resumes or continues ``run`` (by what its run directory holds)."""
    run_dir = os.path.join(args.runs, run.name)
    trainer = os.path.join(REPO, "train_supervised.py" if run.arm == "S1" else "train_adversarial.py")
    if os.path.isfile(os.path.join(run_dir, "last.pt")):  # the checkpoint holds config, data and position
        return [sys.executable, trainer, "--resume", run_dir, "--epochs", str(args.epochs), "--device", args.device]
    fresh = [sys.executable, trainer, *data_flags(args), "--model_name", run.name, "--seed", str(run.seed),
             "--overwrite"]
    if run.arm == "S1":
        return fresh + ["--set", f"snapshot_epochs=[{args.snapshot_epoch}]"]
    return fresh + [CONTINUE_FLAG, snapshot_path(run.seed, args), *ARMS[run.arm][1]]


def snapshot_path(seed: int, args: argparse.Namespace) -> str:
    return os.path.join(args.runs, f"S1-s{seed}", f"epoch_{args.snapshot_epoch}.pt")


def started(run: Run, args: argparse.Namespace) -> bool:
    """Whether ``run`` is recorded or has a checkpoint to resume (then it no longer needs the snapshot)."""
    return (os.path.isfile(os.path.join(args.results, f"{run.name}.json"))
            or os.path.isfile(os.path.join(args.runs, run.name, "last.pt")))


def trainer_can_continue() -> bool:
    """Whether train_adversarial.py has the continuation flag (its --help names it)."""
    done = subprocess.run([sys.executable, os.path.join(REPO, "train_adversarial.py"), "--help"],
                          capture_output=True, text=True, check=True, cwd=REPO)
    return CONTINUE_FLAG in done.stdout


def trained_epochs(run_dir: str) -> int:
    """Epochs ``run_dir/last.pt`` has completed (0 without one)."""
    from checkpoint import load_checkpoint

    path = os.path.join(run_dir, "last.pt")
    return load_checkpoint(path, flag="--runs")["state"]["epoch"] if os.path.isfile(path) else 0


def export_name(path: str, results: str) -> str:
    """A committed export by its path inside the results folder; one left outside by its absolute path."""
    inside = os.path.abspath(path).startswith(os.path.abspath(results) + os.sep)
    return os.path.relpath(path, results) if inside else os.path.abspath(path)


def call(command: list[str]) -> None:
    """Run one step of the study; a step that fails or is stopped ends the script with one line (what is done
    stays: the same command starts again where it stopped)."""
    print("+ " + " ".join(command), flush=True)
    code = subprocess.run(command, cwd=REPO).returncode
    if code:
        step = command[2] if command[1] == "-m" else os.path.basename(command[1])
        raise SystemExit(f"study_adversarial.py: {step} stopped with exit code {code}; "
                         f"start the script again to go on from there")


def run_one(run: Run, args: argparse.Namespace) -> None:
    """Train (or resume), test, export and record ``run``; nothing if its record exists."""
    record = os.path.join(args.results, f"{run.name}.json")
    if os.path.isfile(record):
        print(f"study_adversarial.py: {run.name} done ({record}), skipped", flush=True)
        return
    start, run_dir = time.time(), os.path.join(args.runs, run.name)
    if trained_epochs(run_dir) < args.epochs:
        call(train_command(run, args))
    out = os.path.join(args.outputs, run.name)
    test = [sys.executable, os.path.join(REPO, "test.py"), "--checkpoint", os.path.join(run_dir, "last.pt"),
            "--dataset", "lspet", "--path", args.data, "--split", "val", "--device", args.device, "--output", out,
            "--overwrite"] + (["--max_samples", str(args.val_samples)] if args.val_samples else [])
    call(test)
    weights = (os.path.join(args.results, "weights", f"{run.name}.pt") if run.seed == 0
               else os.path.join(out, f"{run.name}-fp16.pt"))
    os.makedirs(os.path.dirname(weights), exist_ok=True)
    call([sys.executable, "-m", "scripts.export", os.path.join(run_dir, "last.pt"), weights,
          "--fp16", "--overwrite"])
    write_record(run, args, os.path.join(out, "metrics.json"), run_dir, weights, time.time() - start)


def write_record(run: Run, args: argparse.Namespace, metrics: str, run_dir: str, weights: str,
                 wall_seconds: float) -> None:
    """The run's record (reporting.records.run_record plus the study's fields), and its log beside it."""
    import torch

    from reporting.records import run_record
    from runtime.device import choose_precision, cpu_capability, precision_name
    from storage.io import file_sha256, write_json

    with open(os.path.join(run_dir, "config.json")) as f:
        config = json.load(f)
    device = torch.device(args.device)
    precision = precision_name(choose_precision(config["amp"], device).dtype, device, training=True)
    record = run_record(metrics, run_dir, run.arm, run.seed, args.epochs, wall_seconds,
                        start_epoch=0 if run.arm == "S1" else args.snapshot_epoch, arm=ARMS[run.arm][0],
                        config_preset=args.config, isa=cpu_capability(), precision=precision,
                        date=time.strftime("%Y-%m-%d", time.gmtime()), g_export=export_name(weights, args.results),
                        g_sha256=file_sha256(weights))
    logs = os.path.join(args.results, "logs", run.name)
    os.makedirs(logs, exist_ok=True)
    shutil.copyfile(os.path.join(run_dir, "log.jsonl"), os.path.join(logs, "log.jsonl"))  # curves from the repo
    write_json(os.path.join(args.results, f"{run.name}.json"), record, indent=1)
    print(f"{run.name}: {record['metric']} {record['mean']:.2f}", flush=True)


def write_summary(args: argparse.Namespace) -> str:
    """summary.md (per-arm table, the decision rule's contrasts, adv_grad_ratio, every final G's sha256),
    curves.png (val PCK per epoch) and grad_ratio.png (adv_grad_ratio per epoch) from the records."""
    from reporting.plots import plot_grad_ratio_curves, plot_validation_curves, read_epoch_records
    from reporting.records import contrast_table, grad_ratio_table, load_records, summary_table
    from storage.io import write_bytes

    records = load_records(args.results)
    present = {r["method"] for r in records}
    contrasts = [c for c in CONTRASTS if c[0] in present or c[0] in args.arms]
    hashes = ["| run | final G, weights-only fp16 export | sha256 |", "|---|---|---|"]
    hashes += [f"| {r['method']}-s{r['seed']} | {r.get('g_export', 'n/a')} | `{r.get('g_sha256', 'n/a')}` |"
               for r in records]
    parts = [summary_table(records), contrasts and contrast_table(records, contrasts, args.margin, args.bootstrap),
             grad_ratio_table(records), "\n".join(hashes) + "\n"]
    path = os.path.join(args.results, "summary.md")
    write_bytes(path, "\n".join(p for p in parts if p).encode())
    curves = []
    for r in records:
        logs = os.path.join(args.results, "logs", f"{r['method']}-s{r['seed']}")
        if os.path.isfile(os.path.join(logs, "log.jsonl")):
            logged = read_epoch_records(logs)
            # a continuation numbers its epochs on from E; a log that starts at 0 is shifted to count from E
            start = int(r.get("start_epoch", 0)) if logged and logged[0]["epoch"] == 0 else 0
            curves.append((f"{r['method']} seed {r['seed']}", logs, start, bool(r.get("adv_grad_ratio"))))
    if curves:
        plot_validation_curves([c[:3] for c in curves], os.path.join(args.results, "curves.png"), records[0]["metric"])
        pushed = [c[:3] for c in curves if c[3]]
        if pushed:
            plot_grad_ratio_curves(pushed, os.path.join(args.results, "grad_ratio.png"))
    return path


@exit_on_user_error
def main(argv: list[str] | None = None) -> str:
    """Parse flags; run what is not done; write the summary; returns its path."""
    args = parse_args(argv)
    if not args.summary_only:
        os.makedirs(args.results, exist_ok=True)
        for seed in args.seeds:
            run_one(Run("S1", seed), args)
        if args.arms and not trainer_can_continue():
            raise UserInputError(f"train_adversarial.py has no {CONTINUE_FLAG} yet: the S1 runs are done, the arms "
                                 f"({', '.join(args.arms)}) cannot continue them")
        for seed in args.seeds:
            for arm in args.arms:
                run = Run(arm, seed)
                if not started(run, args) and not os.path.isfile(snapshot_path(seed, args)):
                    raise UserInputError(f"{run.name} needs {snapshot_path(seed, args)} (S1 of seed {seed} keeps it)")
                run_one(run, args)
    path = write_summary(args)
    print(open(path).read(), end="")
    return path


if __name__ == "__main__":
    main()
