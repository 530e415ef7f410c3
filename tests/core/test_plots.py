"""`core.plots`: CSV rows with a header in the given order, and figures saved as PNG (folders made, nothing
written when drawing fails)."""

from __future__ import annotations

import csv

import pytest

from hf_experiments.core.plots import figure, log_history_rows, write_csv


def test_write_csv_keeps_field_order_and_makes_folders(tmp_path):
    path = write_csv(tmp_path / "a" / "rows.csv", [{"b": 1, "a": "x"}, {"b": 2, "a": "y"}])
    with open(path, newline="") as f:
        assert list(csv.reader(f)) == [["b", "a"], ["1", "x"], ["2", "y"]]
    write_csv(path, [{"a": "z", "b": 3}], fields=["a", "b"])
    assert path.read_text().splitlines() == ["a,b", "z,3"]


def test_figure_saves_a_png_and_nothing_when_drawing_fails(tmp_path):
    with figure(tmp_path / "plots" / "f.png", 1, 2) as (fig, axes):
        axes[0].plot([0, 1], [1, 0])
        fig.suptitle("two panels")
    assert (tmp_path / "plots" / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ZeroDivisionError), figure(tmp_path / "g.png") as (_, ax):
        ax.plot([1 / 0])
    assert not (tmp_path / "g.png").exists()


def test_log_history_rows_merge_the_entries_of_a_step():
    history = [
        {"loss": 1.0, "step": 5},
        {"eval_loss": 0.9, "eval_runtime": 0.1, "step": 5},
        {"loss": 0.5, "step": 10},
        {"train_runtime": 3.0, "step": 10},  # none of the keys: no row of its own
        {"eval_loss": 0.4, "step": 12},
        {"eval_loss": "n/a", "step": 14},  # not a number
    ]
    assert log_history_rows(history, ["loss", "eval_loss"]) == [
        {"step": 5, "loss": 1.0, "eval_loss": 0.9},
        {"step": 10, "loss": 0.5, "eval_loss": None},
        {"step": 12, "loss": None, "eval_loss": 0.4},
    ]
