"""The results scripts end to end at toy scale: every stage runs and writes its records and summary."""

import json
import os
import shutil
import subprocess

import pytest
from conftest import REPO


def _run_script(name: str, tmp_path, **env) -> str:
    paths = {k: str(tmp_path / k.lower()) for k in ("RESULTS", "RUNS", "OUTPUTS")}
    full_env = {**os.environ, **paths, **env, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", os.path.join(REPO, "scripts", name)], env=full_env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _records(folder) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


@pytest.mark.slow
def test_reproduce_lspet_mini_runs_both_methods_and_summarises(tmp_path, lspet_root):
    _run_script("reproduce-lspet-mini.sh", tmp_path, DATA=lspet_root, CONFIG="config.tiny", EPOCHS="2", DROP="2",
                SEEDS="0", TRAIN_SAMPLES="32")
    records = _records(tmp_path / "results")
    assert [(r["method"], r["seed"], r["epochs"]) for r in records] == [("adversarial", 0, 2), ("supervised", 0, 2)]
    assert records[0]["start_epoch"] == "1" and records[0]["metric"] == "PCK@0.2" and records[0]["count"] > 0
    assert (tmp_path / "runs" / "supervised-s0" / "epoch_1.pt").exists()  # the snapshot the adversarial G starts from
    summary = (tmp_path / "results" / "summary.md").read_text()
    assert "| adversarial | 0 |" in summary and "| supervised | 0 |" in summary
    assert (tmp_path / "results" / "curves.png").exists()

    # a variant of the adversarial half from the same snapshot, recorded beside the first two runs
    _run_script("reproduce-lspet-mini.sh", tmp_path, DATA=lspet_root, CONFIG="config.tiny", EPOCHS="2", DROP="2",
                SEEDS="0", TRAIN_SAMPLES="32", SKIP_SUPERVISED="1", ADV_TAG="adv-eps", ADV_SET="epsilon=3.0 delta=0.3")
    records = _records(tmp_path / "results")
    assert [r["method"] for r in records] == ["adv-eps", "adversarial", "supervised"]
    assert (records[0]["config"]["epsilon"], records[0]["config"]["delta"]) == (3.0, 0.3)
    assert records[1]["config"]["epsilon"] == 1.0  # the defaults run is untouched
    assert "| adv-eps | 0 |" in (tmp_path / "results" / "summary.md").read_text()

    # the same command again keeps every record; REDO=1 runs the variant again and replaces its record
    variant = dict(DATA=lspet_root, CONFIG="config.tiny", EPOCHS="2", DROP="2", SEEDS="0", TRAIN_SAMPLES="32",
                   SKIP_SUPERVISED="1", ADV_TAG="adv-eps", ADV_SET="epsilon=3.0 delta=0.3")
    stamps = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "results").glob("*.json")}
    out = _run_script("reproduce-lspet-mini.sh", tmp_path, **variant)
    assert "adv-eps-s0 done" in out and out.count("skipped") == 1
    assert stamps == {p.name: p.stat().st_mtime_ns for p in (tmp_path / "results").glob("*.json")}
    _run_script("reproduce-lspet-mini.sh", tmp_path, **variant, REDO="1")
    after = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "results").glob("*.json")}
    assert after.pop("adv-eps-s0.json") != stamps.pop("adv-eps-s0.json") and after == stamps

    done = subprocess.run(["bash", os.path.join(REPO, "scripts", "reproduce-lspet-mini.sh")], capture_output=True,
                          text=True, env={**os.environ, "DATA": lspet_root, "SKIP_SUPERVISED": "1",
                                          "RUNS": str(tmp_path / "elsewhere"),
                                          "RESULTS": str(tmp_path / "results-elsewhere")})
    assert done.returncode == 2 and "SKIP_SUPERVISED=1 but" in done.stderr and "epoch_18.pt is missing" in done.stderr


def _recorded(tmp_path, folder: str, names: list[str]):
    """RESULTS in tmp_path holding copies of the committed records ``names`` of results/<folder>/."""
    results = tmp_path / "results"
    results.mkdir()
    for name in names:
        shutil.copy(os.path.join(REPO, "results", folder, f"{name}.json"), results / f"{name}.json")
    return {p.name: p.read_bytes() for p in results.glob("*.json")}


def test_reproduce_lspet_mini_skips_the_runs_it_has_records_of(tmp_path, lspet_root):
    """Running the README command again trains nothing and keeps the committed records."""
    before = _recorded(tmp_path, "lspet-mini", ["supervised-s0", "adversarial-s0"])
    # a preset that does not exist: any training would stop at once, so this passes only if nothing trains
    out = _run_script("reproduce-lspet-mini.sh", tmp_path, DATA=lspet_root, SEEDS="0", CONFIG="config.none")
    results = tmp_path / "results"
    assert out.splitlines()[:2] == [
        f"reproduce-lspet-mini.sh: {name} done ({results}/{name}.json), skipped; REDO=1 runs it again"
        for name in ("supervised-s0", "adversarial-s0")]
    assert {p.name: p.read_bytes() for p in results.glob("*.json")} == before
    assert os.listdir(tmp_path / "runs") == [] and not (tmp_path / "outputs").exists()
    assert (results / "summary.md").exists()


def test_reproduce_lspet_mini_needs_the_snapshot_of_a_recorded_supervised_run(tmp_path, lspet_root):
    _recorded(tmp_path, "lspet-mini", ["supervised-s0"])
    paths = {k: str(tmp_path / k.lower()) for k in ("RESULTS", "RUNS", "OUTPUTS")}
    done = subprocess.run(["bash", os.path.join(REPO, "scripts", "reproduce-lspet-mini.sh")], capture_output=True,
                          text=True, env={**os.environ, **paths, "DATA": lspet_root, "SEEDS": "0",
                                          "CONFIG": "config.none"})  # a training would stop at once
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1, done.stderr
    assert f"adversarial-s0 starts from {tmp_path / 'runs'}/supervised-s0/epoch_18.pt, which is missing" in done.stderr
    assert os.listdir(tmp_path / "runs") == []


@pytest.mark.parametrize("script", ["reproduce-lspet-mini.sh", "ablation-synthetic.sh"])
def test_redo_takes_0_or_1(tmp_path, lspet_root, script):
    paths = {k: str(tmp_path / k.lower()) for k in ("RESULTS", "RUNS", "OUTPUTS")}
    done = subprocess.run(["bash", os.path.join(REPO, "scripts", script)], capture_output=True, text=True,
                          env={**os.environ, **paths, "DATA": lspet_root, "REDO": "yes", "CONFIG": "config.none"})
    assert done.returncode == 2 and done.stderr == f"{script}: REDO=yes; expected 0 (skip the runs already " \
                                                   f"recorded) or 1 (run them again)\n"
    assert os.listdir(tmp_path) == []


def test_synthetic_ablation_skips_the_runs_it_has_records_of(tmp_path):
    names = ["Single-s0", "Multi-s0", "Single-Dis-s0", "Multi-Dis-s0"]
    before = _recorded(tmp_path, "synthetic-ablation", names)
    out = _run_script("ablation-synthetic.sh", tmp_path, SEEDS="0", CONFIG="config.none")  # as above
    results = tmp_path / "results"
    assert out.splitlines()[:4] == [
        f"ablation-synthetic.sh: {name} done ({results}/{name}.json), skipped; REDO=1 runs it again" for name in names]
    assert {p.name: p.read_bytes() for p in results.glob("*.json")} == before
    assert os.listdir(tmp_path / "runs") == [] and not (tmp_path / "outputs").exists()


def test_reproduce_lspet_mini_rejects_a_missing_data_folder(tmp_path):
    done = subprocess.run(["bash", os.path.join(REPO, "scripts", "reproduce-lspet-mini.sh")],
                          env={**os.environ, "DATA": str(tmp_path / "none")}, capture_output=True, text=True)
    assert done.returncode == 2 and "has no joints.mat" in done.stderr


@pytest.mark.slow
def test_synthetic_ablation_runs_the_four_variants(tmp_path):
    _run_script("ablation-synthetic.sh", tmp_path, CONFIG="config.tiny", EPOCHS="1", SEEDS="0", TRAIN_SAMPLES="16",
                VAL_SAMPLES="8")
    records = _records(tmp_path / "results")
    assert sorted(r["method"] for r in records) == ["Multi", "Multi+Dis", "Single", "Single+Dis"]
    occlusion = {r["method"]: r["config"]["predict_occlusion"] for r in records}
    assert occlusion == {"Multi": True, "Multi+Dis": True, "Single": False, "Single+Dis": False}
    per_method, ratios = (tmp_path / "results" / "summary.md").read_text().split("\n\n")  # no supervised: no pairs
    assert per_method.count("| 0 |") == 4
    assert "| Multi+Dis | 0 |" in ratios and "| Single+Dis | 0 |" in ratios  # the adversarial variants' push


@pytest.mark.slow
def test_study_lspet_9k_runs_pairs_sweeps_and_resumes(tmp_path, lspet_root):
    """Toy scale on lspet-mini (the lspet-9k layout): one seed, a one-setting sweep, then a second start that
    skips what is recorded and resumes what is half done, without deleting anything."""
    import torch

    import train_supervised

    toy = {"DATA": lspet_root, "CONFIG": "config.tiny", "EPOCHS": "2", "DROP": "2", "SEEDS": "0",
           "TRAIN_SAMPLES": "32", "VAL_SAMPLES": "48",
           "SWEEP": "sweep-p10:mse_scale=paper,alpha=0.04545,beta=0.05556"}
    # a half-done supervised run of seed 0 (1 of its 2 epochs), as a stopped session leaves it
    runs = tmp_path / "runs"
    train_supervised.main(["--dataset", "lspet", "--path", lspet_root, "--config", "config.tiny", "--device", "cpu",
                           "--save_root", str(runs), "--train_split", "train", "--max_train_samples", "32",
                           "--max_val_samples", "48",
                           "--modelName", "supervised-s0", "--seed", "0", "--epochs", "1", "--set", "lr_milestones=[2]",
                           "--set", "snapshot_epochs=[1]", "--set", "checkpoint_every=100"])
    first_epoch = (runs / "supervised-s0" / "log.jsonl").read_text().splitlines()[0]

    out = _run_script("study-lspet-9k.sh", tmp_path, **toy)
    log = (runs / "supervised-s0" / "log.jsonl").read_text().splitlines()
    assert len(log) == 2 and log[0] == first_epoch  # resumed: epoch 0 kept, epoch 1 trained
    records = {r["method"]: r for r in _records(tmp_path / "results")}
    assert sorted(records) == ["adversarial", "supervised", "sweep-p10"]
    assert all(r["seed"] == 0 and r["epochs"] == 2 and r["metric"] == "PCK@0.2" for r in records.values())
    assert len(records["supervised"]["per_sample"]["hits"]) == 48  # per-image hits for the bootstrap
    adv, sweep = records["adversarial"], records["sweep-p10"]
    assert adv["start_epoch"] == "1" and adv["config"]["pretrained"].endswith("supervised-s0/epoch_1.pt")
    assert (adv["config"]["mse_scale"], adv["config"]["g_error_step"], adv["config"]["adv_stacks"]) == (
        "pixel_mean", True, "last")
    assert (sweep["config"]["mse_scale"], sweep["config"]["alpha"], sweep["config"]["beta"]) == (
        "eq1_literal", 0.04545, 0.05556)  # mse_scale=paper: Eq. 1's literal scale under its old name
    assert (adv["config"]["g_adv_form"], adv["config"]["delta"]) == ("nonsaturating", 0.5)  # as recorded then
    assert sweep["config"]["pretrained"] == adv["config"]["pretrained"]  # the same snapshot
    assert all(len(r["adv_grad_ratio"]) == 1 for r in (adv, sweep))
    summary = (tmp_path / "results" / "summary.md").read_text()
    assert "| adversarial | 0 | " in summary and "95% CI over val images" in summary and "| sweep-p10 | 0 | " in summary
    assert (tmp_path / "results" / "curves.png").exists() and (tmp_path / "results" / "grad_ratio.png").exists()

    # a second start: every record exists, so nothing trains again and nothing is rewritten
    stamps = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "results").glob("*.json")}
    last = torch.load(runs / "adversarial-s0" / "last.pt", weights_only=False)["state"]
    out = _run_script("study-lspet-9k.sh", tmp_path, **toy)
    assert out.count("skipped") == 4  # supervised-s0 is listed twice: for the seeds and for the sweep
    assert stamps == {p.name: p.stat().st_mtime_ns for p in (tmp_path / "results").glob("*.json")}
    assert torch.load(runs / "adversarial-s0" / "last.pt", weights_only=False)["state"] == last
    assert not list(runs.glob("*.old-*"))  # nothing was moved aside either

    # a recorded supervised run whose snapshot is gone: the adversarial half stops with one line naming it
    (tmp_path / "r2").mkdir()
    (tmp_path / "r2" / "supervised-s7.json").write_text("{}")
    done = subprocess.run(["bash", os.path.join(REPO, "scripts", "study-lspet-9k.sh")], capture_output=True, text=True,
                          env={**os.environ, **toy, "SEEDS": "7", "SWEEP": "", "RUNS": str(tmp_path / "none"),
                               "RESULTS": str(tmp_path / "r2"), "OUTPUTS": str(tmp_path / "o2")})
    assert done.returncode == 2 and "adversarial-s7 needs" in done.stderr and "supervised-s7/epoch_1.pt" in done.stderr


def test_study_lspet_9k_rejects_a_missing_data_folder(tmp_path):
    done = subprocess.run(["bash", os.path.join(REPO, "scripts", "study-lspet-9k.sh")],
                          env={**os.environ, "DATA": str(tmp_path / "none")}, capture_output=True, text=True)
    assert done.returncode == 2 and "has no joints.mat" in done.stderr
