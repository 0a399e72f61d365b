"""The results scripts end to end at toy scale: every stage runs and writes its records and summary."""

import json
import os
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run_script(name: str, tmp_path, **env) -> str:
    paths = {k: str(tmp_path / k.lower()) for k in ("RESULTS", "RUNS", "OUTPUTS")}
    full_env = {**os.environ, **paths, **env, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", os.path.join(REPO, "scripts", name)], env=full_env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _records(folder) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


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

    done = subprocess.run(["bash", os.path.join(REPO, "scripts", "reproduce-lspet-mini.sh")], capture_output=True,
                          text=True, env={**os.environ, "DATA": lspet_root, "SKIP_SUPERVISED": "1",
                                          "RUNS": str(tmp_path / "elsewhere")})
    assert done.returncode == 2 and "SKIP_SUPERVISED=1 but" in done.stderr and "epoch_18.pt is missing" in done.stderr


def test_reproduce_lspet_mini_rejects_a_missing_data_folder(tmp_path):
    done = subprocess.run(["bash", os.path.join(REPO, "scripts", "reproduce-lspet-mini.sh")],
                          env={**os.environ, "DATA": str(tmp_path / "none")}, capture_output=True, text=True)
    assert done.returncode == 2 and "has no joints.mat" in done.stderr


def test_synthetic_ablation_runs_the_four_variants(tmp_path):
    _run_script("ablation-synthetic.sh", tmp_path, CONFIG="config.tiny", EPOCHS="1", SEEDS="0", TRAIN_SAMPLES="16",
                VAL_SAMPLES="8")
    records = _records(tmp_path / "results")
    assert sorted(r["method"] for r in records) == ["Multi", "Multi+Dis", "Single", "Single+Dis"]
    occlusion = {r["method"]: r["config"]["predict_occlusion"] for r in records}
    assert occlusion == {"Multi": True, "Multi+Dis": True, "Single": False, "Single+Dis": False}
    summary = (tmp_path / "results" / "summary.md").read_text()
    assert summary.count("| 0 |") == 4
