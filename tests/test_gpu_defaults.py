"""The GPU defaults that a CPU can check: the collective timeout and the compile threads a torchrun rank sets
(two gloo ranks), the torch.compile probe and its one-line fallback to eager, the learning rate scaled with
the global batch, and the GPU presets that use them.

The torchrun worker is this file run as a script (``python -m torch.distributed.run ... tests/
test_gpu_defaults.py OUT``): it joins the group through ``init_distributed``, as the trainer does, and
writes what it saw to ``OUT/rank<r>.json``.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import subprocess
import sys
import time

import pytest
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT_S = 3.0  # the group's timeout in the torchrun test
LATE_S = 8.0  # how late rank 1 comes to the second all-reduce: well past the timeout


def _worker(out: str) -> None:
    """One rank: two all-reduces, rank 1 a little late to the first and ``LATE_S`` late to the second."""
    from runtime.distributed import init_distributed

    info, _ = init_distributed("cpu")
    record = {"threads": os.environ.get("TORCHINDUCTOR_COMPILE_THREADS"), "results": []}
    for delay in (0.5, LATE_S):
        if info.rank == 1:
            time.sleep(delay)
        start = time.monotonic()
        try:
            torch.distributed.all_reduce(torch.ones(1))
            record["results"].append({"ok": True, "seconds": time.monotonic() - start})
        except RuntimeError as err:
            record["results"].append({"ok": False, "seconds": time.monotonic() - start, "error": str(err)[:500]})
            break
    with open(os.path.join(out, f"rank{info.rank}.json"), "w") as f:
        json.dump(record, f)
    os._exit(0)  # a group whose peer timed out cannot be destroyed cleanly; the record is written


@pytest.mark.slow
def test_a_rank_waits_up_to_the_configured_timeout_and_shares_the_compile_threads(tmp_path):
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1", "POSE_DIST_TIMEOUT_S": str(TIMEOUT_S)}
    env.pop("TORCHINDUCTOR_COMPILE_THREADS", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
           os.path.abspath(__file__), str(tmp_path)]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    records = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    rank0 = records[0]["results"]
    assert rank0[0]["ok"], done.stderr[-2000:]  # half a second late: within the timeout
    assert not rank0[1]["ok"] and rank0[1]["seconds"] < LATE_S - 2, rank0  # it gave up after ~TIMEOUT_S
    assert rank0[1]["seconds"] >= TIMEOUT_S - 0.5, rank0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert records[0]["threads"] == records[1]["threads"] == str(max(1, cores // 2))


def test_the_timeout_comes_from_the_environment_or_the_default():
    from runtime.distributed import DEFAULT_DIST_TIMEOUT_S, process_group_timeout
    from utils.errors import UserInputError

    assert process_group_timeout({}) == datetime.timedelta(seconds=DEFAULT_DIST_TIMEOUT_S) \
        == datetime.timedelta(minutes=30)
    assert process_group_timeout({"POSE_DIST_TIMEOUT_S": "90"}) == datetime.timedelta(seconds=90)
    for bad in ("0", "-5", "ten", "nan", "inf"):
        with pytest.raises(UserInputError, match=r"POSE_DIST_TIMEOUT_S=.*positive number of seconds"):
            process_group_timeout({"POSE_DIST_TIMEOUT_S": bad})


def test_a_joining_rank_passes_the_timeout_to_the_process_group(monkeypatch):
    import runtime.distributed as rd

    seen = {}
    for key, value in {"TORCHELASTIC_RUN_ID": "t", "RANK": "0", "WORLD_SIZE": "8", "LOCAL_WORLD_SIZE": "8",
                       "POSE_DIST_TIMEOUT_S": "120"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("TORCHINDUCTOR_COMPILE_THREADS", raising=False)
    monkeypatch.setattr(rd.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(rd.dist, "init_process_group", lambda backend, **kw: seen.update(backend=backend, **kw))
    monkeypatch.setattr(rd, "usable_cores", lambda: 16)
    rd.init_distributed("cpu")
    assert seen == {"backend": "gloo", "timeout": datetime.timedelta(seconds=120)}
    assert os.environ["TORCHINDUCTOR_COMPILE_THREADS"] == "2"  # 16 cores, 8 ranks on this node


def test_compile_threads_per_rank_and_a_users_setting_wins(monkeypatch):
    from runtime.distributed import compile_threads_per_rank, share_compile_threads

    assert [compile_threads_per_rank(16, n) for n in (1, 2, 8, 16, 32)] == [16, 8, 2, 1, 1]
    assert compile_threads_per_rank(0, 0) == 1
    monkeypatch.setenv("TORCHINDUCTOR_COMPILE_THREADS", "5")
    assert not share_compile_threads(2) and os.environ["TORCHINDUCTOR_COMPILE_THREADS"] == "5"


# ---- torch.compile: probed first, eager with one line where it cannot work -------------------------------

@pytest.mark.slow
def test_the_compile_probe_names_why_compile_cannot_work():
    """A C++ compiler that is not there: inductor's CPU code cannot be built, and the probe says so."""
    from runtime.device import compile_problem

    problem = compile_problem("cpu", env={**os.environ, "CXX": "/nonexistent/c++"})
    assert problem is not None and "/nonexistent/c++" in problem and "\n" not in problem
    assert "did not finish within" in compile_problem("cpu", timeout_s=0.05)


def test_resolve_compile_runs_eager_with_one_line_when_the_probe_fails():
    from runtime.device import resolve_compile

    asked = []

    def failing(device: str) -> str:
        asked.append(device)
        return "InvalidCxxCompiler: no working C++ compiler"

    assert resolve_compile(False, torch.device("cpu"), failing) == (False, None) and asked == []  # not probed
    on, note = resolve_compile(True, torch.device("cpu"), failing)
    assert not on and asked == ["cpu"]
    assert note == ("note: compile=True but torch.compile cannot work here (InvalidCxxCompiler: no working C++ "
                    "compiler): running eager")
    assert resolve_compile(True, torch.device("cpu"), lambda device: None) == (True, None)


def test_the_trainer_falls_back_to_eager_with_one_line(monkeypatch, tmp_path, capsys):
    import runtime.device as rt
    from config import load_config
    from training.run import RunSpec, build_run

    monkeypatch.setattr(rt, "compile_problem", lambda device: "no C compiler")
    spec = RunSpec(dataset="synthetic", path=None, train_split="train", val_split="val",
                   run_dir=str(tmp_path / "run"), device="cpu", max_train_samples=8, max_val_samples=4)
    run = build_run(load_config("tiny", {"method": "supervised", "compile": True}), spec)
    assert not hasattr(run.nets.generator, "_orig_mod")  # not wrapped by torch.compile
    lines = [line for line in capsys.readouterr().out.splitlines() if "torch.compile" in line]
    assert lines == ["note: compile=True but torch.compile cannot work here (no C compiler): running eager"]


# ---- learning rate and batch ------------------------------------------------------------------------------

def test_batch_lr_scale_is_sqrt_for_adaptive_optimisers_and_linear_for_sgd():
    from training.build import batch_lr_scale

    assert batch_lr_scale("RMSprop", 6, 6) == batch_lr_scale("Adam", 16, 16) == 1.0
    assert batch_lr_scale("RMSprop", 6, 24) == pytest.approx(2.0)
    assert batch_lr_scale("Adam", 16, 256) == pytest.approx(4.0)
    assert batch_lr_scale("SGD", 8, 64) == pytest.approx(8.0)
    assert batch_lr_scale("RMSprop", 0, 256) == 1.0  # lr_base_batch 0: the lr as set


def test_optimisers_take_the_lr_scaled_to_the_global_batch():
    from config import load_config
    from training.build import build_nets, build_optimizers, lr_scaling_note

    cfg = load_config("tiny", {"method": "adversarial", "lr_base_batch": 4, "lr": 1e-3, "disc_lr": 2e-4,
                               "optimizer": "RMSprop"})
    nets, _ = build_nets(cfg, 16)
    opts = build_optimizers(nets, cfg, torch.device("cpu"), global_batch=4 * 4)  # batch 4 on 4 processes
    assert opts["generator"].param_groups[0]["lr"] == pytest.approx(2e-3)
    assert opts["pose_disc"].param_groups[0]["lr"] == opts["conf_disc"].param_groups[0]["lr"] == pytest.approx(4e-4)
    assert build_optimizers(nets, cfg, torch.device("cpu"))["generator"].param_groups[0]["lr"] == pytest.approx(1e-3)
    assert lr_scaling_note(cfg, 16) == ("lr 0.002 for a global batch of 16 (lr=0.001 is set for lr_base_batch=4, "
                                        "x sqrt(16/4) for RMSprop)")
    assert lr_scaling_note(load_config("tiny"), 16) is None
    paper = load_config("default_config")
    assert paper.lr_base_batch == 0  # the paper's recipe and every CPU preset keep their lr as set


def test_a_resume_on_another_process_count_takes_the_lr_of_the_new_global_batch():
    """Restored optimisers hold the lr of the saved global batch; a resume on another number of processes moves
    them (and the schedules' base rates) to what a run at the new global batch has at the same point."""
    from config import load_config
    from training.build import build_nets, build_optimizers, build_schedulers, rescale_batch_lr

    cfg = load_config("tiny", {"method": "adversarial", "lr_base_batch": 4, "lr": 1e-3, "disc_lr": 2e-4,
                               "optimizer": "SGD", "lr_milestones": [1], "lr_gamma": 0.1})
    nets, _ = build_nets(cfg, 16)

    def after_two_epochs(global_batch):
        optims = build_optimizers(nets, cfg, torch.device("cpu"), global_batch)
        schedulers = build_schedulers(optims, cfg)
        for _ in range(2):
            for optim in optims.values():
                optim.step()
            for scheduler in schedulers.values():
                scheduler.step()
        return optims, schedulers

    saved, saved_schedules = after_two_epochs(16)  # 4 processes; resumed on 2
    note = rescale_batch_lr(saved, saved_schedules, cfg, 16, 8)
    fresh, fresh_schedules = after_two_epochs(8)
    for name in saved:
        assert saved[name].param_groups[0]["lr"] == pytest.approx(fresh[name].param_groups[0]["lr"]), name
        assert saved[name].param_groups[0]["initial_lr"] == pytest.approx(fresh[name].param_groups[0]["initial_lr"])
        assert saved_schedules[name].base_lrs == pytest.approx(fresh_schedules[name].base_lrs)
        assert saved_schedules[name].get_last_lr() == pytest.approx(fresh_schedules[name].get_last_lr())
    assert fresh["generator"].param_groups[0]["lr"] == pytest.approx(1e-3 * 2 * 0.1)  # SGD: x (8/4), one drop
    assert fresh["pose_disc"].param_groups[0]["lr"] == pytest.approx(2e-4 * 2 ** 0.5 * 0.1)  # RMSprop: x sqrt
    assert note == ("note: checkpoint of a global batch of 16 resumed at 8: learning rates rescaled by "
                    "lr_base_batch=4's rule (G's now 0.0002)")
    assert rescale_batch_lr(saved, saved_schedules, cfg, 8, 8) is None
    unscaled = load_config("tiny")
    assert unscaled.lr_base_batch == 0 and rescale_batch_lr(saved, saved_schedules, unscaled, 16, 8) is None


def test_gpu_presets_state_their_per_gpu_batch_lr_rule_and_compile():
    from config import load_config
    from training.build import batch_lr_scale

    newell, lspet = load_config("newell8"), load_config("gpu_lspet")
    assert (newell.batch_size, newell.lr, newell.lr_base_batch, newell.optimizer) == (32, 2.5e-4, 6, "RMSprop")
    assert (lspet.batch_size, lspet.lr, lspet.lr_base_batch, lspet.optimizer) == (32, 1e-3, 16, "Adam")
    assert newell.compile and lspet.compile
    # the figures their docstrings give: one GPU and eight
    assert newell.lr * batch_lr_scale("RMSprop", 6, 32) == pytest.approx(5.8e-4, rel=0.01)
    assert newell.lr * batch_lr_scale("RMSprop", 6, 256) == pytest.approx(1.6e-3, rel=0.03)
    assert lspet.lr * batch_lr_scale("Adam", 16, 32) == pytest.approx(math.sqrt(2) * 1e-3)


def test_ddp_scripts_leave_batch_lr_and_compile_to_the_preset_and_share_the_cores():
    launcher = open(os.path.join(REPO, "scripts", "ddp-launch.sh")).read()  # both scripts launch through it
    assert "${BATCH:+--batch_size=$BATCH}" in launcher and "${LR:+--lr=$LR}" in launcher
    assert "TORCHINDUCTOR_COMPILE_THREADS" in launcher and "POSE_DIST_TIMEOUT_S" in launcher
    for name in ("train-supervised-ddp.sh", "train-adversarial-ddp.sh", "ddp-launch.sh"):
        text = open(os.path.join(REPO, "scripts", name)).read()
        assert "--batch_size \"${BATCH:-" not in text and "--lr \"${LR:-" not in text


if __name__ == "__main__":  # a torchrun rank (see the module docstring)
    sys.path.insert(0, REPO)
    _worker(sys.argv[1])
