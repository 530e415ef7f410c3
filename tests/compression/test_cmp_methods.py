"""The methods table (`trainers/cmp_methods.py`): one row per method from the runs' metrics, intervals from the
run's document bootstrap (one seed) or over seeds, and finished runs reused only when made with the same values."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from hf_experiments.compression.methods import METHODS, compare_methods, method_rows, method_runs
from hf_experiments.core.child_runs import ConfigRun


def _finished(root: Path, name: str, config: str, values: dict, pred: float) -> None:
    """A run folder as `trainers/run.py` leaves it: run_config.json (the values) and metrics.json."""
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "run_config.json").write_text(json.dumps({"config": config, **values}))
    low, high = 5.0, 4.0
    metrics = {
        "low_loss": low,
        "pred_loss": pred,
        "high_loss": high,
        "low_minus_pred": low - pred,
        "low_minus_pred_ci_low": low - pred - 0.05,
        "low_minus_pred_ci_high": low - pred + 0.05,
        "gap_recovered": (low - pred) / (low - high),
        "gap_recovered_ci_low": (low - pred) / (low - high) - 0.1,
        "gap_recovered_ci_high": (low - pred) / (low - high) + 0.1,
        "gap_degenerate": 0.0,
        "num_windows": 512.0,
    }
    (folder / "metrics.json").write_text(json.dumps(metrics))


def _make(root: Path, seeds: list[int], preds: dict[str, list[float]]) -> None:
    for run in method_runs("configs/cmp.json", list(METHODS), seeds):
        method, seed = run.name.rsplit("_seed", 1)
        values = {k: (int(v) if k == "seed" else v) for k, v in run.values.items()}
        _finished(root, run.name, "configs/cmp.json", values, preds[method][seeds.index(int(seed))])


def test_one_row_per_method_with_the_runs_bootstrap_interval(tmp_path):
    _make(tmp_path, [0], {"tokens": [4.3], "mean": [4.8], "lora": [4.1]})
    out = compare_methods("configs/cmp.json", tmp_path, seeds=[0])  # every run finished: nothing trains
    rows = method_rows(tmp_path, list(METHODS), [0])
    assert [r["method"] for r in rows] == list(METHODS)
    tokens = rows[0]
    assert tokens["gap_recovered"] == pytest.approx(0.7)
    assert (tokens["gap_recovered_ci_low"], tokens["gap_recovered_ci_high"]) == pytest.approx((0.6, 0.8))
    assert math.isnan(tokens["low_loss_ci_low"])  # low has no interval of its own in one run
    table = out["md"].read_text().strip().splitlines()
    assert len(table) == 2 + len(METHODS)
    assert "70.0% [60.0%, 80.0%]" in table[2]
    assert len(out["csv"].read_text().strip().splitlines()) == 1 + len(METHODS)
    assert out["png"].stat().st_size > 1000


def test_several_seeds_give_the_t_interval_over_seeds(tmp_path):
    _make(tmp_path, [0, 1, 2], {"tokens": [4.2, 4.3, 4.4], "mean": [4.8] * 3, "lora": [4.1] * 3})
    rows = method_rows(tmp_path, list(METHODS), [0, 1, 2])
    tokens = rows[0]
    assert tokens["gap_recovered"] == pytest.approx(0.7)
    half = 4.303 * 0.1 / math.sqrt(3)  # t(2) x sd / sqrt(n) of 0.8, 0.7, 0.6
    assert tokens["gap_recovered_ci_high"] - tokens["gap_recovered"] == pytest.approx(half, rel=1e-3)
    assert rows[1]["gap_recovered_ci_low"] == pytest.approx(rows[1]["gap_recovered"])  # identical seeds: width 0


def test_a_finished_run_with_other_values_is_not_reused(tmp_path):
    run = ConfigRun("tokens_seed0", "configs/cmp.json", {"pooling": "tokens", "seed": "0"})
    _finished(tmp_path, "tokens_seed0", "configs/cmp.json", {"pooling": "mean", "seed": 0}, 4.5)
    with pytest.raises(ValueError, match="pooling='mean', not tokens"):
        run.check_finished(tmp_path / "tokens_seed0")
    same = ConfigRun("tokens_seed0", "configs/cmp.json", {"pooling": "mean", "seed": "0.0"})
    same.check_finished(tmp_path / "tokens_seed0")  # numbers compare as numbers
    cmd = same.command(str(tmp_path), ["max_steps=5"])
    assert cmd[cmd.index("--max_steps") + 1] == "5" and cmd[cmd.index("--pooling") + 1] == "mean"
    with pytest.raises(ValueError, match="unknown"):
        method_runs("configs/cmp.json", ["tokens", "prefix"], [0])
