"""The Chain-of-Shortcuts figure command end to end (real runs, tiny budgets), the seed statistics, and the
paper-scale GPU configs for two steps on CPU."""

import csv
import json
import math
import os
import subprocess
import sys

os.environ["HF_HUB_OFFLINE"] = "1"

import pytest

from hf_experiments.core.stats import fmt_ci, mean_ci, t975
from tests.helpers import ROOT, run

TINY = [
    "max_steps=4",
    "save_steps=4",
    "eval_steps=4",
    "logging_steps=2",
    "gen_eval_samples=6",
    "val_samples=20",
    "ood_samples=4",
    "d_model=16",
    "n_heads=2",
    "per_device_eval_batch_size=16",
]


def test_mean_ci_is_the_t_interval():
    mean, half = mean_ci([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(4.303 * 1.0 / math.sqrt(3))
    assert math.isnan(mean_ci([5.0])[1]) and fmt_ci([5.0]) == "5.000"
    assert t975(31) == pytest.approx(2.0395, abs=2e-4) and t975(100) == pytest.approx(1.9840, abs=2e-4)
    with pytest.raises(ValueError, match="empty"):
        mean_ci([])


@pytest.mark.slow  # 8 real runs, ~70 s (the suite's second-longest); `pytest -m slow` after changing blotch/figures.py
def test_figure_command_writes_every_figure_from_real_runs(tmp_path):
    save = tmp_path / "figs"
    cmd = [sys.executable, "trainers/blotch_figures.py", "--save_root", str(save), "--seeds", "0", "1"]
    cmd += ["--layers", "1", "2", "--temperatures", "0", "1", "--n_eval", "6", "--jobs", "2", "--set", *TINY]
    cmd += ["--copy_to", str(tmp_path / "img")]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    figs = save / "figures"
    for name in ("levels", "temperature", "baselines", "layers"):
        assert (figs / f"{name}.png").stat().st_size > 0 and (tmp_path / "img" / f"blotch_{name}.png").exists()
    with open(figs / "baselines.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["method"] for r in rows] == ["vanilla", "blotched", "direct"] and all(
        r["answer_acc_n"] == "2" for r in rows
    )
    with open(figs / "layers.csv") as f:
        assert [(r["method"], r["n_layers"]) for r in csv.DictReader(f)] == [
            ("vanilla", "1"), ("vanilla", "2"), ("blotched", "1"), ("blotched", "2"),
        ]  # fmt: skip
    with open(figs / "levels.csv") as f:
        assert len(list(csv.DictReader(f))) == 11  # blotch levels 0, 0.1, ..., 1 of configs/blotch_sums2.json
    summary = json.loads((figs / "summary.json").read_text())
    assert summary["blotch_level"] == json.loads((ROOT / "configs/blotch_sums2.json").read_text())["bootstrap_blotch_p"]
    assert len(summary["length_reduction"]) == 2
    # the temperature-0 evaluation of the saved model equals the run's own greedy evaluation at its headline level
    with open(figs / "temperature.csv") as f:
        greedy = [r for r in csv.DictReader(f) if r["method"] == "vanilla" and float(r["temperature"]) == 0]
    assert float(greedy[0]["answer_acc_mean"]) == pytest.approx(
        next(float(r["answer_acc_mean"]) for r in rows if r["method"] == "vanilla")
    )
    runs = sorted(p.name for p in save.iterdir() if (p / "metrics.json").exists())
    assert runs == sorted(
        ["vanilla_seed0", "vanilla_seed1", "blotched_seed0", "blotched_seed1", "direct_seed0", "direct_seed1",
         "vanilla_L1_seed0", "blotched_L1_seed0"]
    )  # fmt: skip
    stamps = {r: (save / r / "metrics.json").stat().st_mtime_ns for r in runs}
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert stamps == {r: (save / r / "metrics.json").stat().st_mtime_ns for r in runs}  # finished runs are reused


def test_figure_command_rejects_bad_options(tmp_path):
    for bad in (["--vanilla", "no_such.json"], ["--layers", "0"], ["--set", "max_steps"]):
        result = subprocess.run(
            [sys.executable, "trainers/blotch_figures.py", "--save_root", str(tmp_path / "x"), *bad],
            cwd=ROOT, capture_output=True, text=True,
        )  # fmt: skip
        assert result.returncode == 2 and "config error" in result.stderr, bad
        assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("name", ["blotch_paper", "blotch_paper_vanilla", "blotch_paper_direct"])
def test_paper_scale_gpu_configs_run_two_steps_on_cpu(tmp_path_factory, name):
    save = tmp_path_factory.getbasetemp() / "paper_configs"  # the three share one generated dataset
    result = run(
        *["--config", f"configs/{name}.json", "--save_root", str(save), "--max_steps", "2", "--save_steps", "2"],
        *["--eval_steps", "2", "--gen_eval_samples", "2", "--max_eval_batches", "1", "--report_to", "none"],
        # the paper's problems and model, fewer of them: an untrained model writes to its length cap at every level
        *["--init_samples", "300", "--val_samples", "50", "--ood_samples", "0"],
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((save / name / "metrics.json").read_text())
    assert "validation_answer_acc" in metrics


def test_a_finished_run_is_reused_only_with_the_same_values(tmp_path):
    from hf_experiments.blotch.figures import FigurePlan, RunSpec

    (tmp_path / "run_config.json").write_text(json.dumps({"seed": 1, "max_steps": 4, "lr": 0.003, "n_layers": 2}))
    spec = RunSpec("vanilla_seed1", "vanilla", "configs/blotch_sums2_vanilla.json", 1)
    spec.check_finished(tmp_path, ["max_steps=4", "lr=3e-3"])  # the same values, written differently
    with pytest.raises(ValueError, match="max_steps=4, not 200"):
        spec.check_finished(tmp_path, ["max_steps=200"])
    deeper = RunSpec("vanilla_L4_seed1", "vanilla", "configs/blotch_sums2_vanilla.json", 1, n_layers=4)
    assert deeper.settings(["n_layers=1"])["n_layers"] == "4"  # the sweep's depth wins over --set
    with pytest.raises(ValueError, match="n_layers"):
        deeper.check_finished(tmp_path)
    assert FigurePlan().seeds == [1, 2, 3]  # seed 0 was the pilot of the configs' choices
