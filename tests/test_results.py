"""scripts/collect_results.py: run records and the summary table of the reproduction scripts."""

import json

import pytest
from conftest import error_line

from scripts import collect_results


def _fake_run(tmp_path, name, head, mean, occluded_count=0):
    run = tmp_path / "runs" / name
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"epochs": 4, "seed": 0}))
    epochs = [{"kind": "epoch", "epoch": e, "val_mean": mean - 3 + e, "seconds": 600.0} for e in range(3)]
    (run / "log.jsonl").write_text("".join(json.dumps(e) + "\n" for e in epochs))
    metrics = {"metric": "PCK@0.2", "dataset": "lspet", "split": "val", "per_joint": {"Head": head, "Knee": 40.0},
               "mean": mean, "count": 10, "visibility": {"visible": mean, "visible_count": 10,
                                                          "occluded": 5.0, "occluded_count": occluded_count}}
    (run / "metrics.json").write_text(json.dumps(metrics))
    return run


def _record(tmp_path, run, method, seed, *extra):
    out = tmp_path / "results" / f"{run.name}.json"
    out.parent.mkdir(exist_ok=True)
    collect_results.main(["record", "--metrics", str(run / "metrics.json"), "--run_dir", str(run), "--method", method,
                          "--seed", str(seed), "--epochs", "4", "--wall_seconds", "120", "--output", str(out), *extra])
    return json.loads(out.read_text())


def test_record_keeps_metrics_config_and_provenance(tmp_path):
    rec = _record(tmp_path, _fake_run(tmp_path, "sup0", 50.0, 45.0), "supervised", 0, "--info", "start_epoch=2")
    assert rec["per_joint"]["Head"] == 50.0 and rec["mean"] == 45.0 and rec["count"] == 10
    assert (rec["method"], rec["seed"], rec["epochs"], rec["start_epoch"]) == ("supervised", 0, 4, "2")
    assert rec["config"] == {"epochs": 4, "seed": 0} and rec["wall_seconds"] == 120
    assert "cores" in rec["machine"] and "torch" in rec["machine"]


def test_record_replaces_an_existing_file_only_with_overwrite(tmp_path, capsys):
    run = _fake_run(tmp_path, "sup0", 50.0, 45.0)
    out = tmp_path / "results" / "sup0.json"
    _record(tmp_path, run, "supervised", 0)
    before = out.read_bytes()
    line = error_line(collect_results, ["record", "--metrics", str(run / "metrics.json"), "--run_dir", str(run),
                                        "--method", "x", "--seed", "1", "--epochs", "4", "--wall_seconds", "1",
                                        "--output", str(out)], capsys)
    assert line == f"error: --output: 1 file would be replaced ({out}); pass --overwrite to replace them, or " \
                   f"choose another --output"
    assert out.read_bytes() == before
    assert _record(tmp_path, run, "again", 1, "--overwrite")["method"] == "again"
    assert f"replacing 1 earlier file (--overwrite): {out}" in capsys.readouterr().out


def test_summary_gives_mean_and_sample_std_over_seeds_per_method(tmp_path):
    for seed, (head, mean) in enumerate([(50.0, 44.0), (54.0, 46.0)]):
        _record(tmp_path, _fake_run(tmp_path, f"sup{seed}", head, mean), "supervised", seed)
    _record(tmp_path, _fake_run(tmp_path, "adv0", 60.0, 50.0, occluded_count=3), "adversarial", 0)
    collect_results.main(["summary", str(tmp_path / "results")])
    table = (tmp_path / "results" / "summary.md").read_text().splitlines()
    assert table[0].startswith("| method (PCK@0.2, %) | seeds | Head | Knee | Mean |")
    adv, sup = table[2], table[3]  # sorted by method name
    assert sup.startswith("| supervised | 0, 1 | 52.00 ± 2.83 | 40.00 ± 0.00 | **45.00 ± 1.41** |")
    assert adv.startswith("| adversarial | 0 | 60.00 | 40.00 | **50.00** | 50.00 | 5.00 |")
    assert "| n/a |" in sup  # no occluded joints in these runs: no figure rather than a made-up one
    # training time sums the logged epochs (3 x 600 s), not the 120 s wall of the last start of a resumed run
    assert table[0].endswith("| train min |") and sup.endswith("| 30.00 ± 0.00 |")
    assert (tmp_path / "results" / "curves.png").stat().st_size > 0
    assert not (tmp_path / "results" / "grad_ratio.png").exists()  # no run logged a gradient ratio


def test_bad_inputs_are_one_line_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        collect_results.main(["summary", str(tmp_path / "nowhere")])
    assert err.value.code == 2 and "results folder not found" in capsys.readouterr().err
    run = _fake_run(tmp_path, "r", 1.0, 1.0)
    (run / "metrics.json").write_text("{}")
    with pytest.raises(SystemExit):
        _record(tmp_path, run, "supervised", 0)
    assert "lacks count, mean, metric, per_joint" in capsys.readouterr().err


def test_a_baseline_that_names_no_method_is_refused(tmp_path, capsys):
    """Once a typo was accepted and its contrast table silently missing."""
    _record(tmp_path, _fake_run(tmp_path, "sup0", 50.0, 44.0), "supervised", 0)
    _record(tmp_path, _fake_run(tmp_path, "adv0", 60.0, 50.0), "adversarial", 0)
    folder = tmp_path / "results"
    line = error_line(collect_results, ["summary", str(folder), "--baseline", "supervised", "--baseline", "advers"],
                      capsys)
    assert line == (f"error: --baseline: no records of method 'advers' in {folder}; methods found: adversarial, "
                    f"supervised")
    assert not (folder / "summary.md").exists()


def _strict_load(path):
    def refuse(word):
        raise AssertionError(f"{path}: non-standard JSON constant {word}")
    return json.loads(path.read_text(), parse_constant=refuse)


def test_undefined_figures_are_written_as_null(tmp_path):
    """A split without occlusion labels has an undefined occluded score: metrics.json says null, not NaN."""
    import numpy as np

    from inference.scoring import write_metrics
    from storage.io import json_safe

    assert json_safe({"a": [float("inf"), np.float32("nan"), 1.5], "b": (np.int64(3), "x")}) == {
        "a": [None, None, 1.5], "b": [3, "x"]}
    result = {"metric": "PCK@0.2", "per_joint": {"Head": np.float64(50.0)}, "mean": 50.0,
              "visibility": {"visible": 50.0, "visible_count": 4, "occluded": float("nan"), "occluded_count": 0}}
    write_metrics(str(tmp_path), result, "lsp", "test")
    saved = _strict_load(tmp_path / "metrics.json")
    assert saved["visibility"]["occluded"] is None and saved["per_joint"]["Head"] == 50.0

    run = _fake_run(tmp_path, "sup", 60.0, 50.0)
    (run / "metrics.json").write_text(json.dumps({**result, "dataset": "lsp", "split": "test", "count": 4}))
    record = _record(tmp_path, run, "supervised", 0)
    assert record["visibility"]["occluded"] is None
    _strict_load(tmp_path / "results" / "sup.json")


# ---- paired differences with a bootstrap over val images ------------------------------------------------------


def _synthetic_record(method: str, seed: int, hits, counted) -> dict:
    hits, counted = [int(h) for h in hits], [int(c) for c in counted]
    return {"method": method, "seed": seed, "mean": 100.0 * sum(hits) / sum(counted),
            "per_sample": {"hits": hits, "counted": counted}}


def test_paired_difference_recovers_a_known_difference_with_a_paired_interval():
    """400 images x 4 joints. The baseline's hits vary a lot from image to image (0-4); the other method hits
    one more joint on every 10th image (seed 0: +2.5 points) or every 5th (seed 1: +5.0 points). Paired per
    image, the interval is as narrow as that difference's own sampling spread (about +-0.7 for seed 0 alone,
    where the spread of the baseline's per-image hits would give about +-5 unpaired)."""
    import numpy as np

    from reporting.records import paired_difference

    n = 400
    counted = [4] * n
    base = np.random.default_rng(0).integers(0, 4, n)  # 0..3, so +1 stays within 4
    baseline = [_synthetic_record("supervised", s, base, counted) for s in (0, 1)]
    plus = {0: base + (np.arange(n) % 10 == 0), 1: base + (np.arange(n) % 5 == 0)}
    runs = [_synthetic_record("adversarial", s, plus[s], counted) for s in (0, 1)]

    one = paired_difference(runs[:1], baseline, n_boot=4000)
    assert one["seeds"] == [0] and one["per_seed"] == pytest.approx([2.5])
    assert one["difference"] == pytest.approx(2.5)
    assert 1.5 < one["low"] < 2.2 and 2.8 < one["high"] < 3.5  # 2.5 +- 1.96 * 100 * sqrt(.1 * .9 / 400) / 4

    both = paired_difference(runs, baseline, n_boot=4000)
    assert both["per_seed"] == pytest.approx([2.5, 5.0]) and both["difference"] == pytest.approx(3.75)
    assert both["low"] < 3.75 < both["high"] and both["high"] - both["low"] < 2.0

    same = paired_difference(baseline, baseline, n_boot=500)
    assert (same["difference"], same["low"], same["high"]) == (0.0, 0.0, 0.0)
    assert paired_difference(runs, baseline, n_boot=4000) == both  # a fixed seed: the same interval every time


def test_paired_difference_refuses_records_of_other_images():
    from reporting.records import paired_difference
    from utils.errors import UserInputError

    a = [_synthetic_record("adversarial", 0, [1, 2], [2, 2])]
    with pytest.raises(UserInputError, match="other val images or joints"):
        paired_difference(a, [_synthetic_record("supervised", 0, [1, 2], [2, 3])])
    with pytest.raises(UserInputError, match="no seed shared"):
        paired_difference(a, [_synthetic_record("supervised", 1, [1, 2], [2, 2])])


def test_a_second_baseline_pairs_the_sweep_against_the_default_setting_without_repeating_rows():
    from reporting.records import paired_table

    counted = [2, 2, 2, 2]
    records = [_synthetic_record("supervised", 0, [1, 1, 1, 1], counted),
               _synthetic_record("adversarial", 0, [2, 1, 1, 1], counted),  # +12.5 on supervised
               _synthetic_record("sweep-paper", 0, [2, 2, 1, 1], counted)]  # +25 on supervised, +12.5 on adv.
    first = paired_table(records, "supervised", 200)
    second = paired_table(records, "adversarial", 200, skip=("supervised",))
    assert "| adversarial | 0 | +12.50 |" in first and "| sweep-paper | 0 | +25.00 |" in first
    assert "method − adversarial" in second and "| sweep-paper | 0 | +12.50 |" in second
    assert "| supervised |" not in second  # the first table's row, negated: left out
    assert paired_table(records[:2], "adversarial", 200, skip=("supervised",)) == ""  # nothing left to pair


def test_summary_pairs_methods_by_image_and_lists_the_gradient_ratio(tmp_path):
    hits = {"sup": [2, 1, 0, 2], "adv": [2, 2, 0, 2]}  # adversarial: one more joint of 8 on image 1: +12.5
    for name, method in (("sup", "supervised"), ("adv", "adversarial")):
        run = _fake_run(tmp_path, name, 50.0, 100.0 * sum(hits[name]) / 8)
        metrics = json.loads((run / "metrics.json").read_text())
        metrics["per_sample"] = {"hits": hits[name], "counted": [2, 2, 2, 2]}
        (run / "metrics.json").write_text(json.dumps(metrics))
        if method == "adversarial":
            (run / "config.json").write_text(json.dumps({"mse_scale": "paper", "alpha": 0.5, "beta": 0.25,
                                                         "adv_stacks": "all"}))
            (run / "log.jsonl").write_text("".join(json.dumps({"kind": "epoch", "epoch": e, "seconds": 10.0,
                                                               "adv_grad_ratio": r, "val_mean": 1.0}) + "\n"
                                                   for e, r in enumerate((0.01, 0.04))))
        rec = _record(tmp_path, run, method, 0)
        assert rec["per_sample"]["hits"] == hits[name]
    assert rec["adv_grad_ratio"] == [0.01, 0.04] and rec["train_seconds"] == 20.0
    collect_results.main(["summary", str(tmp_path / "results"), "--bootstrap", "200"])
    summary = (tmp_path / "results" / "summary.md").read_text()
    assert "| adversarial | 0 | +12.50 | **+12.50** | [" in summary
    assert "| adversarial | 0 | paper | 0.5 | 0.25 | all | 0.01 | 0.04 | 0.02 | 75.00 |" in summary
    assert (tmp_path / "results" / "grad_ratio.png").stat().st_size > 0
