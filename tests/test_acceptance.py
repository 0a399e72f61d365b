"""scripts/gpu-acceptance.sh and its helpers: the time arithmetic (runtime/budget.py), the plan from a measured
calibration (scripts/acceptance_plan.py), the summary's statuses, skip reasons and GPU-only checks
(scripts/acceptance_summary.py), and the whole chain at toy scale on a CPU, as CI runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from runtime.budget import (
    StepTiming,
    TrainingPlan,
    deadlines,
    epoch_seconds,
    plan_runs,
    plan_training,
    run_seconds,
    steps_that_fit,
    window_iterations,
)
from scripts import acceptance_plan as ap
from scripts import acceptance_summary as summary

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = ["environment", "compile-probe", "calibrate", "plan", "cuda-tests", "benchmark-model", "pipeline",
         "train-supervised", "test-supervised", "train-adversarial", "test-adversarial"]


# ---- the arithmetic ---------------------------------------------------------------------------------------

def test_steps_allowed_are_the_budget_after_the_warm_up_over_the_step_time():
    assert steps_that_fit(100.0, 40.0, 0.5) == 120
    assert steps_that_fit(100.0, 100.5, 0.5) == 0  # a compile longer than the budget leaves no step
    assert window_iterations(30.0, 0.1, repeats=3) == 100  # capped
    assert window_iterations(3.0, 0.1, repeats=3) == 10
    assert window_iterations(0.01, 0.1, repeats=3) == 2  # a window of one step times the launch
    with pytest.raises(ValueError):
        steps_that_fit(10.0, 0.0, 0.0)


def test_an_epoch_is_its_steps_validation_and_overhead():
    # 100 samples at batch 10: 10 steps of 0.3 s; 25 val samples: 3 batches at a third of a step; 2 s overhead
    assert epoch_seconds(100, 10, 25, 0.3, 2.0) == pytest.approx(3.0 + 0.3 + 2.0)
    assert epoch_seconds(105, 10, 0, 0.3, 0.0) == pytest.approx(3.0)  # the partial batch is dropped
    # an input pipeline slower than the step sets the pace of training and validation batches alike
    assert epoch_seconds(100, 10, 25, 0.3, 2.0, batch_load_s=0.5) == pytest.approx(10 * 0.5 + 3 * 0.5 + 2.0)


def test_training_is_sized_from_the_measured_step_and_counts_both_warm_ups():
    t = StepTiming(startup_s=10.0, warmup_s=20.0, step_s=0.1)
    full = epoch_seconds(1800, 32, 200, 0.1, 2.0)  # 5.6 + 0.7 + 2 = 8.3 s
    plan = plan_training(200.0, t, 32, 1800, 200, min_epochs=3, max_epochs=40, epoch_overhead_s=2.0)
    assert plan == TrainingPlan(int((200 - 10 - 40) // full), 1800, pytest.approx(50 + plan.epochs * full))
    assert plan.seconds <= 200.0
    # a budget that holds fewer than min_epochs whole epochs: min_epochs epochs of fewer samples
    small = plan_training(70.0, t, 32, 1800, 200, min_epochs=3, max_epochs=40, epoch_overhead_s=2.0)
    assert small.epochs == 3 and small.samples < 1800 and small.samples % 32 == 0 and small.seconds <= 70.0
    # the cap, and a compile that eats the budget
    assert plan_training(1e6, t, 32, 1800, 200, 3, 5, 2.0).epochs == 5
    assert plan_training(50.0, t, 32, 1800, 200, 3, 40, 2.0) is None


def test_a_run_and_its_continuation_share_the_budget():
    """The adversarial half runs half the supervised epochs from its snapshot, on as many samples."""
    sup, adv = StepTiming(5.0, 10.0, 0.1), StepTiming(5.0, 15.0, 0.3)
    both = plan_runs(300.0, [sup, adv], 32, 640, 64, min_epochs=2, max_epochs=40, epoch_overhead_s=1.0)
    assert [p.samples for p in both] == [640, 640] and both[1].epochs == both[0].epochs // 2
    assert sum(p.seconds for p in both) <= 300.0
    more = plan_runs(300.0, [sup, adv], 32, 640, 64, 2, both[0].epochs + 1, 1.0)
    assert more == both  # the next epoch count would not fit
    assert both[0].seconds == run_seconds(sup, both[0].epochs, 640, 32, 64, 1.0)
    tight = plan_runs(70.0, [sup, adv], 32, 640, 64, 2, 40, 1.0)
    assert [p.epochs for p in tight] == [2, 1] and tight[0].samples < 640 and sum(p.seconds for p in tight) <= 70
    assert plan_runs(50.0, [sup, adv], 32, 640, 64, 2, 40, 1.0) is None  # the warm-ups alone take 55 s


def test_deadlines_add_up_so_unused_time_passes_on():
    assert deadlines(100.0, {"a": 10.0, "b": 0.0, "c": 5.5}) == {"a": 110.0, "b": 110.0, "c": 115.5}


# ---- the plan ---------------------------------------------------------------------------------------------

def _record(sup_rate: float = 320.0, adv_rate: float | None = 100.0, warm: float = 20.0) -> dict:
    """A scripts/benchmark.py record at batch 32, as the calibration step writes it."""
    rates = {"supervised": {"plain": 100.0, "optimized": sup_rate}}
    warmups = {"supervised": {"plain": 2.0, "optimized": warm}}
    if adv_rate:
        rates["adversarial"] = {"plain": 40.0, "optimized": adv_rate}
        warmups["adversarial"] = {"plain": 3.0, "optimized": warm * 1.5}
    return {"batch_size": 32, "train_images_per_s": rates, "warmup_seconds": warmups, "compile": True,
            "timed_steps": {m: {"plain": 4, "optimized": 4} for m in rates}}


def test_calibration_takes_the_optimized_step_and_leaves_the_rest_to_start_up():
    cal = ap.calibration_from_benchmark(_record(adv_rate=None), seconds=40.0)
    # accounted: warm-ups 2 + 20, steps (1 + 3) x (32/100 + 32/320) = 1.68 s
    assert cal.batch == 32 and cal.timings["supervised"] == StepTiming(pytest.approx(40 - 22 - 1.68), 20.0, 0.1)
    assert ap.calibration_from_benchmark(_record(adv_rate=None), 5.0).timings["supervised"].startup_s == 1.0
    assert cal.eager["supervised"] == StepTiming(pytest.approx(40 - 22 - 1.68), 2.0, 0.32)  # plain: true fp32
    assert ap.calibration_from_benchmark({**_record(), "compile": False}, 40.0).eager == {}  # nothing to save


def test_the_input_pipeline_joins_the_measured_step():
    cal = ap.calibration_from_benchmark(_record(), 30.0)  # 0.1 s per supervised step at batch 32
    fed = ap.with_input_pipeline(cal, sample_s=0.004, workers=8)  # 32 x 4 ms over 8 workers: 16 ms a batch
    assert fed.timings["supervised"].batch_load_s == pytest.approx(0.016)
    assert fed.timings["supervised"].step_s == cal.timings["supervised"].step_s
    inline = ap.with_input_pipeline(cal, sample_s=0.004, workers=0)  # no workers: loading comes between steps
    assert inline.timings["supervised"].step_s == pytest.approx(0.1 + 0.128)
    assert inline.timings["supervised"].batch_load_s == 0.0


def test_the_plan_sizes_training_and_benchmark_to_their_shares_of_the_time_left():
    cal = ap.calibration_from_benchmark(_record(), 40.0)
    plan = ap.plan_chain(600.0, cal, 1800, 200, min_epochs=3, max_epochs=40, has_data=True, has_pipeline=True,
                         bench_cap_s=1e9)
    assert list(plan.seconds) == ["cuda-tests", "benchmark-model", "pipeline", "train-supervised",
                                  "test-supervised", "train-adversarial", "test-adversarial", "summary"]
    assert sum(plan.seconds.values()) == pytest.approx(600.0)  # every second of the budget is planned
    assert plan.supervised.epochs >= 3 and plan.adversarial and 1 <= plan.adversarial.epochs < plan.supervised.epochs
    assert plan.snapshot == plan.supervised.epochs - plan.adversarial.epochs and not plan.skipped
    assert plan.seconds["train-supervised"] == pytest.approx(ap.PLAN_MARGIN * plan.supervised.seconds)
    assert 1.0 < plan.bench_time_budget < plan.seconds["benchmark-model"]
    # a compile twice as long, for a benchmarked G twice the size: the benchmark keeps what its two compiles
    # need, and the training runs give it up
    slow_cal = ap.calibration_from_benchmark(_record(warm=60.0), 170.0)
    slow = ap.plan_chain(600.0, slow_cal, 1800, 200, 3, 40, True, True, 1e9, bench_graph_ratio=2.0)
    assert slow.seconds["benchmark-model"] >= ap.floors(slow_cal.timings["supervised"], 2.0)["benchmark-model"]
    assert slow.seconds["benchmark-model"] > plan.seconds["benchmark-model"]
    training = ("train-supervised", "train-adversarial")
    assert sum(slow.seconds[k] for k in training) < sum(plan.seconds[k] for k in training)
    assert sum(slow.seconds.values()) == pytest.approx(600.0)
    env = ap.plan_env(plan)
    assert f"TRAIN_EPOCHS={plan.supervised.epochs}\n" in env and f"SNAPSHOT_EPOCHS='[{plan.snapshot}]'\n" in env
    assert "PLAN_train_supervised=" in env and "SKIP_" not in env


def test_the_training_runs_eager_when_compile_would_cost_more_than_it_saves():
    def cal(warmup: float) -> ap.Calibration:
        return ap.Calibration(32, {"supervised": StepTiming(8.0, warmup, 0.02)},
                              {"supervised": StepTiming(8.0, 2.0, 0.06)})  # eager fp32: 3x slower, no compile

    quick = ap.plan_chain(360.0, cal(5.0), 1800, 200, 3, 40, True, False, 1e9, 2.0)
    slow = ap.plan_chain(360.0, cal(45.0), 1800, 200, 3, 40, True, False, 1e9, 2.0)
    assert not quick.train_eager and "TRAIN_EAGER=0\n" in ap.plan_env(quick)
    assert slow.train_eager and slow.supervised and "TRAIN_EAGER=1\n" in ap.plan_env(slow)


def test_the_plan_skips_with_reasons():
    cal = ap.calibration_from_benchmark(_record(adv_rate=None), 30.0)
    plan = ap.plan_chain(400.0, cal, 1800, 200, 3, 40, has_data=True, has_pipeline=False, bench_cap_s=5.0)
    assert sum(plan.seconds.values()) == pytest.approx(400.0)  # the adversarial test's time is not lost
    assert plan.adversarial is None and plan.snapshot == 0 and plan.supervised
    assert plan.skipped == {"pipeline": "scripts/benchmark.py has no --photo_pipeline flag (issue 25, point 4)",
                            "train-adversarial": "adversarial step not calibrated (this profile trains "
                                                 "supervised only)", "test-adversarial": "no adversarial run"}
    assert plan.bench_time_budget == 5.0 and plan.seconds["pipeline"] == 0
    assert "SNAPSHOT_EPOCHS='[]'\n" in ap.plan_env(plan)
    assert "SKIP_train_adversarial='adversarial step not calibrated (this profile trains supervised only)'" \
        in ap.plan_env(plan)

    no_data = ap.plan_chain(400.0, cal, 0, 0, 3, 40, has_data=False, has_pipeline=True, bench_cap_s=1e9)
    assert no_data.supervised is None and no_data.skipped["train-supervised"] == "no data (DATA has no joints.mat)"
    assert sum(no_data.seconds.values()) == pytest.approx(400.0)  # the training's share goes to the rest
    assert no_data.seconds["train-supervised"] == no_data.seconds["test-supervised"] == 0
    assert no_data.seconds["benchmark-model"] / no_data.seconds["cuda-tests"] == pytest.approx(0.30 / 0.20)

    short = ap.plan_chain(60.0, ap.calibration_from_benchmark(_record(warm=30.0), 60.0), 1800, 200, 3, 40, True,
                          True, 1e9)
    assert short.supervised is None and short.skipped["train-supervised"].startswith("budget: 3 epochs")

    blind = ap.plan_chain(300.0, None, 1800, 200, 3, 40, True, True, 1e9)  # the calibration failed
    assert blind.skipped["train-supervised"] == "no calibration (logs/calibrate.log)"
    assert blind.seconds["cuda-tests"] > 0 and blind.seconds["benchmark-model"] > 0


def test_the_lr_drops_after_four_fifths_never_before_the_snapshot():
    assert [ap.lr_drop(e, s) for e, s in ((10, 5), (10, 9), (2, 1), (1, 0), (0, 0))] == [8, 10, 2, 1, 1]


# ---- the summary ------------------------------------------------------------------------------------------

def _write(path, record) -> str:
    path.write_text(json.dumps(record))
    return str(path)


def test_the_summary_says_what_ran_what_was_skipped_and_why(tmp_path):
    out = tmp_path / "acc"
    (out / "logs").mkdir(parents=True)
    (out / "cuda-tests.xml").write_text('<testsuites><testsuite tests="3" failures="0" errors="0" skipped="3">'
                                        '</testsuite></testsuites>')
    probe = _write(out / "probe.json", {"device": "cuda:0", "compile": False, "reason": "no C compiler",
                                        "seconds": 3.0})
    (out / "steps.tsv").write_text("\n".join([
        "environment\t1\t0\t-\t0\tmissing: cv2 (PROFILE=offline installs nothing)",
        f"compile-probe\t0\t4\t{probe}\t120\t",
        f"cuda-tests\t0\t5\t{out / 'cuda-tests.xml'}\t90\t",
        f"benchmark-model\t124\t420\t{out / 'bench-model.json'}\t400\t",
        "pipeline\tskipped\t0\t-\t0\tscripts/benchmark.py has no --photo_pipeline flag",
        f"train-supervised\t0\t10\t{out / 'missing.jsonl'}\t100\t"]) + "\n")
    done = subprocess.run([sys.executable, "-m", "scripts.acceptance_summary", str(out), "--device", "cuda",
                           "--profile", "offline", "--budget", "450"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 1, done.stderr
    s = json.loads((out / "summary.json").read_text())
    status = {x["name"]: x["status"] for x in s["steps"]}
    assert status == {"environment": "failed (exit 1: missing: cv2 (PROFILE=offline installs nothing))",
                      "compile-probe": "passed", "cuda-tests": "failed (every CUDA test skipped)",
                      "benchmark-model": "timed out (limit 400 s)",
                      "pipeline": "skipped: scripts/benchmark.py has no --photo_pipeline flag",
                      "train-supervised": "failed (wrote no output)"}
    assert s["failed"] == ["environment", "cuda-tests", "benchmark-model", "train-supervised"]
    assert s["skipped"] == {"pipeline": "scripts/benchmark.py has no --photo_pipeline flag"}
    assert "pipeline" not in s["ran"] and "compile-probe" in s["ran"]
    md = (out / "summary.md").read_text()
    assert "NOT all steps passed" in md and "- pipeline: scripts/benchmark.py has no --photo_pipeline flag" in md
    assert "| compile-probe | passed | 4 | 120 | eager: no C compiler |" in md
    checks = {c["check"]: c for c in s["gpu_checks"]}
    assert checks["torch.compile works on CUDA"] == {"check": "torch.compile works on CUDA", "shown": True,
                                                    "value": "no C compiler", "target": "works", "met": False}
    assert all(not c["shown"] for c in s["gpu_checks"] if "needs several GPUs" in c["check"])


def test_the_gpu_checks_hold_a_run_against_issue_27s_targets(tmp_path):
    bench = {"config": "config.newell8", "batch_size": 32, "optimized_dtype": "bfloat16", "compile": True,
             "cpu_count": 16, "train_images_per_s": {"supervised": {"plain": 300.0, "optimized": 900.0},
                                                     "adversarial": {"plain": 100.0, "optimized": 200.0}},
             "speedup": {"supervised": 3.0, "adversarial": 2.0}, "peak_tflops": 989.4,
             "peak_fraction": {"supervised": 0.15, "adversarial": 0.1},
             "warmup_seconds": {"supervised": {"plain": 3.0, "optimized": 95.0},
                                "adversarial": {"plain": 4.0, "optimized": 60.0}},
             "peak_memory_gib": {"supervised": {"plain": 30.0, "optimized": 12.5},
                                 "adversarial": {"plain": 35.0, "optimized": 15.0}}}
    pipeline = tmp_path / "bench-pipeline.json"  # --photo_pipeline: each path's rate by DataLoader workers
    pipeline.write_text(json.dumps({"photo_pipeline": {"loader_samples_per_s": {
        "baseline": {"1": 90.0, "8": 600.0}, "direct": {"1": 200.0, "8": 1200.0}, "prepared": {"1": 900.0}}}}))
    log = tmp_path / "log.jsonl"
    log.write_text("\n".join(json.dumps({"kind": "epoch", "images_per_s": 800.0, "seconds": 5.0, "loss_mse": loss,
                                         "val_metric": "PCK@0.2", "val_mean": pck})
                             for loss, pck in ((900.0, 10.0), (600.0, 25.0))) + "\n")
    steps = [{"name": "benchmark-model", "status": "passed", "figures": bench},
             {"name": "pipeline", "status": "passed", "figures": summary.benchmark_figures(str(pipeline))},
             {"name": "train-supervised", "status": "passed", "figures": summary.training_figures(str(log))}]
    checks = {c["check"]: c for c in summary.gpu_checks(steps, "cuda")}
    assert checks["optimized supervised step against true fp32 (newell8, 256 px, batch 32)"]["met"] is True
    frac = checks["optimized supervised step, fraction of dense bf16 peak"]
    assert frac["met"] is False and frac["value"] == "15.0% of 989.4 TFLOP/s"
    assert steps[1]["figures"] == {"pipeline_images_per_s": 1200.0, "pipeline_prepared_images_per_s": 900.0}
    assert checks["input pipeline keeps up with the optimized supervised step"]["met"] is True
    falls = checks["real photos on CUDA: the supervised loss falls"]
    assert falls["met"] is True and falls["value"] == "loss 900 -> 600 over 2 epochs"
    assert checks["peak GPU memory at batch 32 (optimized)"]["value"] == "supervised 12.5 GiB, adversarial 15.0 GiB"
    assert not any(c["shown"] for c in summary.gpu_checks(steps, "cpu"))  # a CPU run shows none of them


# ---- the chain, as CI runs it -------------------------------------------------------------------------------

@pytest.mark.slow
def test_gpu_acceptance_quick_on_cpu_plans_runs_and_summarises(tmp_path, lspet_root):
    """QUICK=1 DEVICE=cpu, with COMPILE=1 and a C++ compiler that is not there: the probe fails, one line says
    so, and the chain runs eager."""
    out = tmp_path / "acceptance"
    env = {**os.environ, "QUICK": "1", "DEVICE": "cpu", "OUT": str(out), "DATA": lspet_root, "OMP_NUM_THREADS": "1",
           "COMPILE": "1", "CXX": "/nonexistent/c++"}
    done = subprocess.run(["bash", os.path.join(REPO, "scripts", "gpu-acceptance.sh")], env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    fallback = [line for line in done.stdout.splitlines() if "torch.compile cannot work here" in line]
    assert len(fallback) == 1 and "/nonexistent/c++" in fallback[0] and fallback[0].endswith("every step runs eager")
    s = json.loads((out / "summary.json").read_text())
    steps = {x["name"]: x for x in s["steps"]}
    assert list(steps) == STEPS
    assert s["all_passed"] and s["quick"] and s["device"] == "cpu"
    assert steps["compile-probe"]["figures"]["compile"] is False
    assert steps["cuda-tests"]["status"] == "skipped: no CUDA device"
    assert steps["cuda-tests"]["figures"]["skipped"] == steps["cuda-tests"]["figures"]["tests"] > 0
    assert steps["pipeline"]["status"].startswith("skipped: ") or steps["pipeline"]["status"] == "passed"
    # the plan came from the calibration, and every later step ran within the limit it set
    plan = json.loads((out / "plan.json").read_text())
    assert plan["timings"]["supervised"]["step_s"] > 0
    assert (plan["supervised"]["epochs"], plan["supervised"]["samples"]) == (2, 64)
    assert plan["adversarial"]["epochs"] == 1 and plan["snapshot"] == 1
    for name in ("cuda-tests", "benchmark-model", "train-supervised", "test-supervised", "train-adversarial"):
        assert 0 < steps[name]["seconds"] <= steps[name]["limit"] <= s["budget"], name
    bench = steps["benchmark-model"]["figures"]
    assert set(bench["train_images_per_s"]) == {"supervised", "adversarial"} and bench["compile"] is False
    assert set(bench["warmup_seconds"]["supervised"]) == {"plain", "optimized"}
    assert steps["train-supervised"]["figures"]["epochs"] == 2 and steps["train-adversarial"]["figures"]["epochs"] == 1
    for name in ("test-supervised", "test-adversarial"):
        f = steps[name]["figures"]
        assert f["metric"] == "PCK@0.2" and f["count"] > 0 and f["flip_test"] is True and f["precision"] == "fp32"
    assert (out / "runs" / "supervised" / "epoch_1.pt").exists()  # the snapshot the adversarial G starts from
    assert "initialised G from" in (out / "logs" / "train-adversarial.log").read_text()
    md = (out / "summary.md").read_text()
    assert "**no step failed**" in md and "| test-adversarial | passed |" in md and "Only a GPU shows" in md

    # a second run never writes over the first one's files
    again = subprocess.run(["bash", os.path.join(REPO, "scripts", "gpu-acceptance.sh")], env=env,
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "OVERWRITE=1" in again.stderr and (out / "summary.json").exists()


def test_gpu_acceptance_rejects_a_bad_profile_or_budget(tmp_path):
    script = os.path.join(REPO, "scripts", "gpu-acceptance.sh")
    for extra, message in (({"PROFILE": "fast"}, "PROFILE=fast: expected offline or full"),
                           ({"BUDGET": "5m"}, "BUDGET=5m: expected whole seconds")):
        done = subprocess.run(["bash", script], env={**os.environ, "OUT": str(tmp_path / "o"), **extra},
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and message in done.stderr and not (tmp_path / "o").exists()
