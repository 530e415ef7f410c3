"""Progress bars of our own long loops (`hf_experiments.core.progress`): drawn in the Trainer's style on the main
rank, off with `disable_tqdm`, on other ranks and when the Hugging Face bars are switched off; a sweep of two tiny
jobs draws its jobs-done bar (and none with `disable_tqdm`); the repeat generator draws one."""

from __future__ import annotations

import io

from transformers import TrainingArguments
from transformers.utils import logging as hf_logging

from hf_experiments.core.progress import bars_enabled, progress_bar
from hf_experiments.recurrent.repeat_data import RepeatDataSpec, generate_splits
from hf_experiments.sweeps.api import run_sweep
from tests.mlp.helpers import tiny_mlp_config


def drawn(**kwargs) -> str:
    """What a bar of 3 steps named ``demo loop`` writes."""
    out = io.StringIO()
    with progress_bar(desc="demo loop", total=3, file=out, **kwargs) as bar:
        bar.update(3)
    return out.getvalue()


def test_a_bar_shows_its_name_and_count_on_the_main_process(tmp_path, monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    text = drawn(args=TrainingArguments(output_dir=str(tmp_path)))
    assert "demo loop" in text and "3/3" in text


def test_a_bar_is_off_with_disable_tqdm_on_other_ranks_and_with_hf_bars_off(tmp_path, monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    assert drawn(args=TrainingArguments(output_dir=str(tmp_path), disable_tqdm=True)) == ""
    assert drawn(disable=True) == ""
    monkeypatch.setenv("RANK", "1")  # a launcher's second process, before torch.distributed starts
    assert not bars_enabled() and drawn() == ""
    monkeypatch.setenv("RANK", "0")
    hf_logging.disable_progress_bar()
    try:
        assert drawn() == ""
    finally:
        hf_logging.enable_progress_bar()
    assert "demo loop" in drawn()


def test_a_sweep_shows_jobs_done_of_total_and_none_with_disable_tqdm(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    grid = {"trial": [0, 1]}
    run_sweep(tiny_mlp_config(tmp_path / "a", exp_name="bars", sweep=grid, max_steps=4), devices=[])
    err = capsys.readouterr().err
    assert "sweep jobs" in err and "2/2" in err, err[-2000:]
    quiet = tiny_mlp_config(tmp_path / "b", exp_name="quiet", sweep=grid, max_steps=4, disable_tqdm=True)
    _, df = run_sweep(quiet, devices=[])
    assert set(df["status"]) == {"finished"}
    assert "sweep jobs" not in capsys.readouterr().err


def test_the_repeat_generator_draws_a_bar_over_all_sequences(capsys, monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    spec = RepeatDataSpec(n_train=3000, n_valid=200, n_valid_extra=100, min_len=3, max_len=6)
    tables = generate_splits(spec)
    total = sum(t.num_rows for t in tables.values())
    err = capsys.readouterr().err
    assert "repeat data" in err and f"{total}/{total}" in err, err[-1000:]
