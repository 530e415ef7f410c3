"""`benchmarks/blotch/blotch_sweep_table.py`: the table the blotch docs' sweep sections are made from."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from hf_experiments.blotch.self_training.history import write_history

ROOT = Path(__file__).resolve().parents[2]


def _table_module():
    path = ROOT / "benchmarks" / "blotch" / "blotch_sweep_table.py"
    spec = importlib.util.spec_from_file_location("blotch_sweep_table", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _history(run: Path, lengths: list[float]) -> None:
    rows = [
        {"epoch": i, "step": 10 * i, "rows": 8, "mean_solution_length": x, "val_answer_acc": None}
        for i, x in enumerate(lengths)
    ]
    write_history(rows, run / "cache_history.csv")


def test_rows_report_accuracy_and_cache_shortening_and_list_stopped_runs(tmp_path, capsys):
    done, stopped, plain = tmp_path / "axe", tmp_path / "cut", tmp_path / "vanilla"
    for run in (done, stopped, plain, tmp_path / "_data", tmp_path / "logs"):
        run.mkdir()
    _history(done, [50.0, 40.0, 35.0])
    (done / "metrics.json").write_text(json.dumps({"validation_answer_acc": 0.5, "validation_gen_len": 36.04}))
    _history(stopped, [50.0, 45.0])
    (plain / "metrics.json").write_text(json.dumps({"validation_answer_acc": 0.958, "validation_gen_len": 55.9}))
    _table_module().main([str(tmp_path)])
    lines = capsys.readouterr().out.splitlines()
    body = {line.split("|")[1].strip(): line for line in lines[2:]}
    assert set(body) == {"axe", "cut", "vanilla"}  # `_`-prefixed folders and folders without results skipped
    assert "| 0.500 | 36.0 | 50.0 → 35.0 (-30%) |" in body["axe"]
    assert "stopped at epoch 1" in body["cut"] and "50.0 → 45.0 (-10%)" in body["cut"]
    assert body["vanilla"].endswith("| 0.958 | 55.9 |  |")
