"""Run records (``results/<dataset>/<run>.json``) and the summary tables the reproduction scripts print.

A record is one tested checkpoint: test.py's metrics (``per_joint``, ``mean``, ``count``, visibility, the
per-image hits behind the Mean) plus what produced it (method, seed, epochs, the run's resolved config, wall
and training time, machine) and, for adversarial runs, the per-epoch gradient ratio of its log.
"""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict

import numpy as np

from reporting.bootstrap import INCONCLUSIVE, paired_contrast, seeds_to_settle, verdict
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
    epochs_logged = _epoch_records(run_dir)
    record = {
        "method": method, "seed": seed, "epochs": epochs, **extra,
        "metric": metrics["metric"], "dataset": metrics.get("dataset"), "split": metrics.get("split"),
        "per_joint": metrics["per_joint"], "mean": metrics["mean"], "count": metrics["count"],
        **{k: metrics[k] for k in OTHER_FIGURES if k in metrics},
        "visibility": metrics.get("visibility"), "wall_seconds": round(wall_seconds, 1),
        # the training time of every epoch in the log: the whole run's, also when it was resumed across sessions
        "train_seconds": round(sum(r.get("seconds", 0.0) for r in epochs_logged), 1),
        "machine": machine_description(), "packages": package_versions(), "run_dir": run_dir, "config": config,
    }
    if any("adv_grad_ratio" in r for r in epochs_logged):
        record["adv_grad_ratio"] = [r.get("adv_grad_ratio") for r in epochs_logged]
    if metrics.get("per_sample"):
        record["per_sample"] = metrics["per_sample"]
    return record


def _epoch_records(run_dir: str) -> list[dict]:
    """The epoch lines of ``run_dir/log.jsonl`` ([] without a log)."""
    path = os.path.join(run_dir, "log.jsonl")
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        lines = [json.loads(line) for line in f if line.strip()]
    return [r for r in lines if r.get("kind", "epoch") == "epoch"]


def load_records(folder: str) -> list[dict]:
    """Every ``*.json`` record in ``folder``, sorted by method then seed."""
    if not os.path.isdir(folder):
        raise UserInputError(f"results folder not found: {folder}")
    names = sorted(n for n in os.listdir(folder) if n.endswith(".json"))
    records = [_read_json(os.path.join(folder, n), "results") for n in names]
    records = [r for r in records if "method" in r and "per_joint" in r]
    if not records:
        raise UserInputError(f"{folder} holds no run records (*.json written by "
                             f"python -m scripts.collect_results record)")
    return sorted(records, key=lambda r: (r["method"], r["seed"]))


def _mean_spread(values: list[float]) -> str:
    """'m ± s' with the sample standard deviation over seeds (just 'm' for a single run)."""
    v = np.array([x for x in values if x is not None and not math.isnan(x)], np.float64)
    if v.size == 0:
        return "n/a"
    return f"{v.mean():.2f}" if v.size == 1 else f"{v.mean():.2f} ± {v.std(ddof=1):.2f}"


def summary_table(records: list[dict]) -> str:
    """Markdown table: per method, every joint group and Mean as mean ± std over seeds, then training time.

    Training time is ``train_seconds`` (every logged epoch, so a run resumed across sessions counts whole; an
    adversarial half counts its own epochs only), else ``wall_seconds`` for records that predate it."""
    by_method: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_method[r["method"]].append(r)
    groups = list(records[0]["per_joint"])
    metric = records[0]["metric"]
    head = f"| method ({metric}, %) | seeds | " + " | ".join(groups) + " | Mean | visible | occluded | train min |"
    lines = [head, "|" + "---|" * (len(groups) + 6)]
    for method, runs in by_method.items():
        cells = [_mean_spread([r["per_joint"][g] for r in runs]) for g in groups]
        vis = [(r.get("visibility") or {}) for r in runs]
        occluded = [v.get("occluded") if v.get("occluded_count") else None for v in vis]
        minutes = [r.get("train_seconds", r["wall_seconds"]) / 60 for r in runs]
        lines.append(
            f"| {method} | {', '.join(str(r['seed']) for r in runs)} | " + " | ".join(cells)
            + f" | **{_mean_spread([r['mean'] for r in runs])}** | {_mean_spread([v.get('visible') for v in vis])}"
            + f" | {_mean_spread(occluded)} | {_mean_spread(minutes)} |"
        )
    return "\n".join(lines) + "\n"


def paired_hits(runs: list[dict], baseline: list[dict]) -> tuple[list[int], np.ndarray, np.ndarray, np.ndarray]:
    """The per-image hits of ``runs`` and ``baseline`` on their shared seeds: (seeds, hits (S, N) of each,
    counted (N,)). Refused with one line when no seed is shared or a record scored other images or joints."""
    by_seed = {r["seed"]: r for r in baseline}
    pairs = [(r, by_seed[r["seed"]]) for r in runs if r["seed"] in by_seed]
    if not pairs:
        raise UserInputError(f"no seed shared by {runs[0]['method']} and {baseline[0]['method']}: nothing to pair")
    counted = pairs[0][0]["per_sample"]["counted"]
    for run in (r for p in pairs for r in p):
        if run["per_sample"]["counted"] != counted:
            raise UserInputError(f"records of {run['method']} seed {run['seed']} scored other val images or "
                                 f"joints than {pairs[0][0]['method']} seed {pairs[0][0]['seed']}: cannot pair")
    hits = [np.array([p[side]["per_sample"]["hits"] for p in pairs], np.float64) for side in (0, 1)]
    return [p[0]["seed"] for p in pairs], hits[0], hits[1], np.array(counted, np.float64)


def paired_difference(runs: list[dict], baseline: list[dict], n_boot: int = 10000, seed: int = 0) -> dict:
    """``runs`` minus ``baseline``, paired by seed and by val image (``reporting.bootstrap.paired_contrast``):
    the difference of the seed-averaged Means, each seed's own difference, a 95% percentile-bootstrap interval
    over val images ("low", "high": the trained networks held fixed) and one that resamples the seeds and then
    the images ("seeds_low", "seeds_high": the seed-to-seed spread of training included). Records need
    ``per_sample`` (test.py's per-image hits). Returns {"seeds", "per_seed", "difference", "low", "high",
    "seeds_low", "seeds_high", "n_boot"}.
    """
    seeds, hits_a, hits_b, counted = paired_hits(runs, baseline)
    c = paired_contrast(hits_a, hits_b, counted, seeds, n_boot, seed)
    return {"seeds": list(c.seeds), "per_seed": list(c.per_seed), "difference": c.difference,
            "low": c.image_only[0], "high": c.image_only[1], "seeds_low": c.seeds_then_images[0],
            "seeds_high": c.seeds_then_images[1], "n_boot": n_boot}


def paired_table(records: list[dict], baseline: str, n_boot: int = 10000, skip: tuple[str, ...] = ()) -> str:
    """Markdown table: every other method minus ``baseline`` (``paired_difference``), over their shared seeds;
    methods whose records lack per-image hits say so, methods in ``skip`` are left out (a second baseline's
    table need not repeat the first one's row negated). "" without ``baseline`` records or other methods."""
    by_method: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_method[r["method"]].append(r)
    others = [m for m in by_method if m != baseline and m not in skip]
    if baseline not in by_method or not others:
        return ""
    lines = [f"| method − {baseline} (Mean, points) | seeds | per seed | difference | 95% CI over val images "
             "| 95% CI over seeds, then images |", "|---|---|---|---|---|---|"]
    for method in others:
        runs = by_method[method]
        if not all(r.get("per_sample") for r in runs + by_method[baseline]):
            lines.append(f"| {method} | | | n/a | records without per-image hits | |")
            continue
        if not {r["seed"] for r in runs} & {r["seed"] for r in by_method[baseline]}:
            lines.append(f"| {method} | | | n/a | no seed shared with {baseline} | |")
            continue
        d = paired_difference(runs, by_method[baseline], n_boot)
        seeds = (f"[{d['seeds_low']:+.2f}, {d['seeds_high']:+.2f}]" if len(d["seeds"]) > 1
                 else "n/a: one seed, its spread unmeasured")
        lines.append(f"| {method} | {', '.join(map(str, d['seeds']))} | "
                     + ", ".join(f"{x:+.2f}" for x in d["per_seed"])
                     + f" | **{d['difference']:+.2f}** | [{d['low']:+.2f}, {d['high']:+.2f}] ({d['n_boot']} draws) "
                       f"| {seeds} |")
    return "\n".join(lines) + "\n"


def contrast_table(records: list[dict], contrasts: list[tuple[str, str]], margin: float,
                   n_boot: int = 10000) -> str:
    """Markdown table of the contrasts (arm, baseline) that a study's decision rule reads: per-seed differences,
    their mean, the 95% interval over seeds then images (``reporting.bootstrap``) and, for comparison, the one
    over images alone, the rule's outcome at ``margin`` points and the seeds a projection says would settle an
    inconclusive one. Rows whose arms have no records (yet) say so, and a contrast with one seed gets no
    outcome: the rule reads an interval that includes the seed-to-seed spread."""
    by_method: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_method[r["method"]].append(r)
    lines = [f"| contrast (Mean, points) | seeds | per seed | difference | 95% CI, seeds then images | "
             f"95% CI, images only | outcome (margin ±{margin:g}) | seeds to settle |", "|---" * 8 + "|"]
    for arm, baseline in contrasts:
        name = f"{arm} − {baseline}"
        runs, base = by_method.get(arm, []), by_method.get(baseline, [])
        shared = {r["seed"] for r in runs} & {r["seed"] for r in base}
        if not shared:
            lines.append(f"| {name} | | | n/a | no seed recorded for both arms yet | | | |")
            continue
        seeds, hits_a, hits_b, counted = paired_hits(runs, base)
        c = paired_contrast(hits_a, hits_b, counted, seeds, n_boot)
        if len(c.seeds) < 2:  # no seed-to-seed spread yet: the seeds-then-images interval would be the image one
            across, outcome, settle = "n/a: one seed", "not read: one seed has no seed-to-seed spread", ""
        else:
            across = f"[{c.seeds_then_images[0]:+.2f}, {c.seeds_then_images[1]:+.2f}]"
            outcome = verdict(c.seeds_then_images, margin)
            settle = "" if outcome != INCONCLUSIVE else (str(seeds_to_settle(c, margin) or "more val images"))
        lines.append(f"| {name} | {', '.join(map(str, c.seeds))} | " + ", ".join(f"{x:+.2f}" for x in c.per_seed)
                     + f" | **{c.difference:+.2f}** | {across} | [{c.image_only[0]:+.2f}, {c.image_only[1]:+.2f}]"
                     f" | {outcome} | {settle} |")
    return "\n".join(lines) + "\n"


def grad_ratio_table(records: list[dict]) -> str:
    """Markdown table of the adversarial strength of each run with a logged ``adv_grad_ratio``: its settings,
    the ratio in the first and last epoch and its geometric mean over the epochs, and the run's Mean."""
    rows = [r for r in records if r.get("adv_grad_ratio")]
    if not rows:
        return ""
    lines = ["| method | seed | mse_scale | alpha | beta | adv_stacks | adv_grad_ratio, first epoch | last | "
             "geometric mean | Mean |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cfg, ratios = r["config"], [x for x in r["adv_grad_ratio"] if x is not None and x > 0]
        geo = f"{math.exp(np.mean(np.log(ratios))):.3g}" if ratios else "n/a"
        first, last = (f"{r['adv_grad_ratio'][i]:.3g}" if r["adv_grad_ratio"][i] is not None else "n/a"
                       for i in (0, -1))
        lines.append(f"| {r['method']} | {r['seed']} | {cfg.get('mse_scale', 'pixel_mean')} | {cfg.get('alpha'):.4g} "
                     f"| {cfg.get('beta'):.4g} | {cfg.get('adv_stacks', 'last')} | {first} | {last} | {geo} "
                     f"| {r['mean']:.2f} |")
    return "\n".join(lines) + "\n"
