"""gru runs write `accuracy.png` (exact-match and symbol accuracy of every validation set over the steps) and the
CSV behind it."""

from __future__ import annotations

import csv
import json

from tests.mlp.helpers import run_here
from tests.recurrent.test_recurrent import _tiny_config

PNG = b"\x89PNG\r\n\x1a\n"


def test_gru_repeat_writes_the_accuracy_plot_and_its_csv(tmp_path):
    assert run_here(_tiny_config(tmp_path, max_steps=4, eval_steps=2, save_steps=4, report_to="none")) == 0
    run_dir = tmp_path / "rep"
    png = run_dir / "accuracy.png"
    assert png.stat().st_size > 1000 and png.read_bytes()[:8] == PNG
    with open(run_dir / "accuracy.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    sets = ["valid", "valid_norepeat", "valid_longer_1", "valid_longer_2", "valid_longer_1_norepeat"]
    assert list(rows[0]) == ["step", *(f"eval_{s}_{m}" for s in sets for m in ("accuracy", "symbol_accuracy"))]
    assert [r["step"] for r in rows] == ["2", "4"]  # each evaluation; the final one is step 4's
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for s in sets:  # the last row is the final evaluation in metrics.json
        assert float(rows[-1][f"eval_{s}_accuracy"]) == metrics[f"eval_{s}_accuracy"]
        assert all(0.0 <= float(r[f"eval_{s}_symbol_accuracy"]) <= 1.0 for r in rows)
