"""Summarise a ``scripts/gpu-acceptance.sh`` run into OUT/summary.md and OUT/summary.json.

    python -m scripts.acceptance_summary OUT [--device cuda] [--quick]

Reads OUT/steps.tsv (one line per step, written by the shell script: name, exit code, seconds, the file the
step writes) and, for each step, the figures in that file: the CUDA tests' JUnit XML, a benchmark JSON, a
training run's log.jsonl or test.py's metrics.json. A step passed when it exited 0 and wrote its file.
Exit code 0 only when every step passed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import xml.etree.ElementTree as ElementTree

from runtime.system import machine_description
from runtime.versions import package_versions
from storage.io import write_bytes, write_json
from utils.errors import UserInputError, exit_on_user_error

TIMEOUT_EXITS = (124, 137)  # coreutils' timeout stopped the step (137: it had to send KILL after INT)


def junit_figures(path: str) -> dict:
    """Test counts of a pytest --junitxml file."""
    root = ElementTree.parse(path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    return counts


def benchmark_figures(path: str) -> dict:
    """The headline figures of a scripts/benchmark.py JSON record (images/s, speed-ups, peak fractions)."""
    with open(path) as f:
        r = json.load(f)
    keys = ("config", "batch_size", "device_name", "optimized_dtype", "compile", "quick", "train_images_per_s",
            "speedup", "tflops_achieved", "peak_tflops", "peak_fraction", "inference_images_per_s")
    return {k: r[k] for k in keys if k in r}


def training_figures(path: str) -> dict:
    """Epochs done, the last epoch's images/s and validation, and the training time of a run's log.jsonl."""
    with open(path) as f:
        epochs = [r for r in (json.loads(line) for line in f if line.strip()) if r.get("kind") == "epoch"]
    if not epochs:
        return {"epochs": 0}
    last = epochs[-1]
    return {"epochs": len(epochs), "images_per_s": last["images_per_s"], "train_seconds": sum(r["seconds"]
                                                                                              for r in epochs),
            "val_metric": last["val_metric"], "val_mean": last["val_mean"]}


def test_figures(path: str) -> dict:
    """Metric, mean, sample count and how test.py computed them (device, precision, flip test)."""
    with open(path) as f:
        m = json.load(f)
    return {k: m.get(k) for k in ("metric", "mean", "count", "device", "precision", "flip_test")}


def figures(path: str) -> dict:
    """The figures of the file a step wrote, read by its kind."""
    name = os.path.basename(path)
    if name.endswith(".xml"):
        return junit_figures(path)
    if name == "log.jsonl":
        return training_figures(path)
    if name == "metrics.json":
        return test_figures(path)
    return benchmark_figures(path)


def read_steps(out: str, device: str) -> list[dict]:
    """The steps of OUT/steps.tsv with their status and figures. CUDA tests that all skipped pass only when
    ``device`` is not a CUDA device (the QUICK chain on a CPU)."""
    path = os.path.join(out, "steps.tsv")
    if not os.path.isfile(path):
        raise UserInputError(f"{path} not found (written by scripts/gpu-acceptance.sh)")
    steps = []
    with open(path) as f:
        for line in f:
            name, code, seconds, output = line.rstrip("\n").split("\t")
            step = {"name": name, "exit_code": int(code), "seconds": int(seconds), "output": output}
            written = os.path.isfile(output)
            if step["exit_code"] in TIMEOUT_EXITS:
                step["status"] = "timed out"
            elif step["exit_code"] != 0:
                step["status"] = f"failed (exit {step['exit_code']})"
            else:
                step["status"] = "passed" if written else "failed (wrote no output)"
            step["figures"] = figures(output) if written else {}
            if step["status"] == "passed" and name == "cuda-tests" and step["figures"].get("tests") \
                    == step["figures"].get("skipped"):
                on_cuda = device.startswith("cuda")
                step["status"] = "failed (every CUDA test skipped)" if on_cuda else "skipped (no CUDA device)"
            steps.append(step)
    return steps


def _n(v) -> str:
    return "-" if v is None else (f"{v:,.1f}" if isinstance(v, float) else str(v))


def describe(step: dict) -> str:
    """The figures of one step in a few words, for the markdown table."""
    f = step["figures"]
    if not f:
        return ""
    if "tests" in f:
        return f"{f['passed']} passed, {f['failures'] + f['errors']} failed, {f['skipped']} skipped"
    if "train_images_per_s" in f:
        parts = [f"{f['config']} batch {f['batch_size']}, {f['optimized_dtype']}"]
        for method, rates in f["train_images_per_s"].items():
            frac = (f.get("peak_fraction") or {}).get(method)
            parts.append(f"{method} {_n(rates['optimized'])} img/s ({f['speedup'][method]:.2f}x plain"
                         + (f", {100 * frac:.1f}% of peak" if frac else "") + ")")
        if "inference_images_per_s" in f:
            inf = f["inference_images_per_s"]
            parts.append(f"inference {_n(inf['batch']['optimized'])} / single {_n(inf['single']['optimized'])} img/s")
        return "; ".join(parts)
    if "epochs" in f:
        if not f["epochs"]:
            return "no epoch finished"
        return (f"{f['epochs']} epochs, {_n(f['images_per_s'])} img/s, {_n(f['train_seconds'])} s training, "
                f"val {f['val_metric']} {f['val_mean']:.2f}")
    return (f"{f['metric']} {f['mean']:.2f} on {f['count']} joints ({f['device']}, {f['precision']}, "
            f"flip test {'on' if f['flip_test'] else 'off'})")


def markdown(summary: dict) -> str:
    """summary.md: what ran where, then one table row per step."""
    lines = [f"# GPU acceptance{' (QUICK: toy scale)' if summary['quick'] else ''}", "",
             f"{summary['date']}, device `{summary['device']}`, {summary['machine']}", "",
             f"**{'all steps passed' if summary['all_passed'] else 'NOT all steps passed'}** "
             f"in {summary['total_seconds']} s", "",
             "| step | status | seconds | figures |", "|---|---|---:|---|"]
    lines += [f"| {s['name']} | {s['status']} | {s['seconds']} | {describe(s)} |" for s in summary["steps"]]
    lines += ["", f"Logs: `{summary['out']}/logs/<step>.log`; figures in full: `summary.json`."]
    return "\n".join(lines) + "\n"


@exit_on_user_error
def main(argv: list[str] | None = None) -> int:
    """Write both summaries; returns the exit code (0 when every step passed)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", help="the output folder of scripts/gpu-acceptance.sh")
    p.add_argument("--device", default="cuda", help="the device the steps ran on")
    p.add_argument("--quick", action="store_true", help="the toy-scale chain (QUICK=1)")
    args = p.parse_args(argv)
    steps = read_steps(args.out, args.device)
    ok = ("passed", "skipped (no CUDA device)")
    summary = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "out": args.out, "quick": args.quick, "device": args.device, "machine": machine_description(),
               "packages": package_versions(), "all_passed": all(s["status"] in ok for s in steps),
               "total_seconds": sum(s["seconds"] for s in steps), "steps": steps}
    write_json(os.path.join(args.out, "summary.json"), summary)
    write_bytes(os.path.join(args.out, "summary.md"), markdown(summary).encode())  # whole, or the old one
    print(markdown(summary), end="")
    return 0 if summary["all_passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
