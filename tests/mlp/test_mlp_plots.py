"""mlp runs write `loss.png` (training loss, its EMA and the test loss over the steps, with the loss checkpoints'
thresholds) and the CSVs behind it."""

from __future__ import annotations

import csv
import json

from tests.mlp.helpers import run_here, tiny_mlp_config, write

PNG = b"\x89PNG\r\n\x1a\n"


def _rows(path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_mlp_writes_the_loss_plot_with_its_thresholds(tmp_path):
    cfg = tiny_mlp_config(
        tmp_path,
        exp_name="lp",
        loss_checkpoints=[10.0, 1e-9],
        logging_steps=5,
        eval_strategy="steps",
        eval_steps=10,
    )
    assert run_here(write(tmp_path / "lp.json", cfg)) == 0
    run_dir = tmp_path / "lp"
    png = run_dir / "loss.png"
    assert png.stat().st_size > 1000 and png.read_bytes()[:8] == PNG
    rows = _rows(run_dir / "loss.csv")
    assert list(rows[0]) == ["step", "loss", "ema_loss", "eval_loss"]
    assert [r["step"] for r in rows] == ["5", "10", "15", "20"]
    assert all(float(r["loss"]) > 0 and float(r["ema_loss"]) > 0 for r in rows)
    assert [r["step"] for r in rows if r["eval_loss"]] == ["10", "20"]
    thresholds = _rows(run_dir / "loss_thresholds.csv")
    assert [(t["name"], t["crossed_at_step"]) for t in thresholds] == [
        ("step_to_loss_10", "1"),  # below 10 from the first step
        ("step_to_loss_1e-09", ""),  # never
    ]


def test_relative_thresholds_are_drawn_at_their_loss(tmp_path):
    cfg = tiny_mlp_config(tmp_path, exp_name="rel", loss_checkpoints=[2.0], loss_checkpoints_relative=True)
    assert run_here(write(tmp_path / "rel.json", cfg)) == 0
    (row,) = _rows(tmp_path / "rel" / "loss_thresholds.csv")
    initial = json.loads((tmp_path / "rel" / "metrics.json").read_text())["initial_loss"]
    assert float(row["loss"]) == 2.0 * initial and row["crossed_at_step"] == "1"
    assert (tmp_path / "rel" / "loss.png").read_bytes()[:8] == PNG
