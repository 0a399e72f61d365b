"""Run records (``results/<dataset>/<run>.json``) and the summary tables the reproduction scripts print.

A record is one tested checkpoint: test.py's metrics (``per_joint``, ``mean``, ``count``, visibility) plus
what produced it (method, seed, epochs, the run's resolved config, wall time, machine).
"""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict

import numpy as np

from runtime.system import machine_description
from runtime.versions import package_versions
from utils.errors import UserInputError

# metrics.json figures of the other conventions (inference.metrics), kept when present; older files lack them.
OTHER_FIGURES = ("mean_unweighted", "mean_at_0.1", "auc", "auc_range", "head_official", "joints")


def _read_json(path: str, what: str) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except OSError as err:
        raise UserInputError(f"{what}: cannot read {path} ({err.strerror or err})") from None
    except json.JSONDecodeError:
        raise UserInputError(f"{what}: {path} is not a JSON file") from None


def run_record(metrics_path: str, run_dir: str, method: str, seed: int, epochs: int, wall_seconds: float,
               **extra) -> dict:
    """The record of one tested run: metrics.json fields + provenance; ``extra`` keys are stored as given."""
    metrics = _read_json(metrics_path, "--metrics")
    config = _read_json(os.path.join(run_dir, "config.json"), "--run_dir")
    missing = {"per_joint", "mean", "count", "metric"} - set(metrics)
    if missing:
        raise UserInputError(f"--metrics: {metrics_path} lacks {', '.join(sorted(missing))} (not a test.py output?)")
    return {
        "method": method, "seed": seed, "epochs": epochs, **extra,
        "metric": metrics["metric"], "dataset": metrics.get("dataset"), "split": metrics.get("split"),
        "per_joint": metrics["per_joint"], "mean": metrics["mean"], "count": metrics["count"],
        **{k: metrics[k] for k in OTHER_FIGURES if k in metrics},
        "visibility": metrics.get("visibility"), "wall_seconds": round(wall_seconds, 1),
        "machine": machine_description(), "packages": package_versions(), "run_dir": run_dir, "config": config,
    }


def load_records(folder: str) -> list[dict]:
    """Every ``*.json`` record in ``folder``, sorted by method then seed."""
    if not os.path.isdir(folder):
        raise UserInputError(f"results folder not found: {folder}")
    names = sorted(n for n in os.listdir(folder) if n.endswith(".json"))
    records = [_read_json(os.path.join(folder, n), "results") for n in names]
    records = [r for r in records if "method" in r and "per_joint" in r]
    if not records:
        raise UserInputError(f"{folder} holds no run records (*.json written by collect_results.py record)")
    return sorted(records, key=lambda r: (r["method"], r["seed"]))


def _mean_spread(values: list[float]) -> str:
    """'m ± s' with the sample standard deviation over seeds (just 'm' for a single run)."""
    v = np.array([x for x in values if x is not None and not math.isnan(x)], np.float64)
    if v.size == 0:
        return "n/a"
    return f"{v.mean():.2f}" if v.size == 1 else f"{v.mean():.2f} ± {v.std(ddof=1):.2f}"


def summary_table(records: list[dict]) -> str:
    """Markdown table: per method, every joint group and Mean as mean ± std over seeds, then wall time."""
    by_method: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_method[r["method"]].append(r)
    groups = list(records[0]["per_joint"])
    metric = records[0]["metric"]
    head = f"| method ({metric}, %) | seeds | " + " | ".join(groups) + " | Mean | visible | occluded | wall min |"
    lines = [head, "|" + "---|" * (len(groups) + 6)]
    for method, runs in by_method.items():
        cells = [_mean_spread([r["per_joint"][g] for r in runs]) for g in groups]
        vis = [(r.get("visibility") or {}) for r in runs]
        occluded = [v.get("occluded") if v.get("occluded_count") else None for v in vis]
        lines.append(
            f"| {method} | {', '.join(str(r['seed']) for r in runs)} | " + " | ".join(cells)
            + f" | **{_mean_spread([r['mean'] for r in runs])}** | {_mean_spread([v.get('visible') for v in vis])}"
            + f" | {_mean_spread(occluded)} | {_mean_spread([r['wall_seconds'] / 60 for r in runs])} |"
        )
    return "\n".join(lines) + "\n"
