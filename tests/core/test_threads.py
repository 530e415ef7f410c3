"""`torch_threads`: `auto` times the first steps with 1 thread and with all cores (alternating, after a warm-up),
keeps the faster, stores the choice in the run folder and reuses it on resume; a number sets the count; a set
`OMP_NUM_THREADS` (the user's or a launcher's choice) is left alone; a bad value is one line, exit 2."""

from __future__ import annotations

import json

import pytest
import torch

from hf_experiments.core import threads
from hf_experiments.core.threads import DEFAULT_THREADS, PROBE_ROUNDS, RECORD, choose, probe_plan
from tests.helpers import TINY_ARROWS, assert_config_error
from tests.mlp.helpers import run_here, write


@pytest.fixture(autouse=True)
def _restore_threads():
    """A run sets the thread count of this (test) process: give the next test torch's count back."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_probe_alternates_after_a_warm_up_and_the_faster_median_wins():
    assert probe_plan(2, 4) == [(4, False), (1, True), (4, True), (1, True), (4, True)]
    assert choose({1: [0.10, 0.50, 0.11], 2: [0.20, 0.21, 0.19]}) == 1  # median, not mean: one slow outlier
    assert choose({1: [0.3, 0.3, 0.3], 2: [0.1, 0.9, 0.1]}) == 2
    assert choose({1: [0.2], 2: [0.2]}) == 2  # a tie: torch's default
    assert choose({1: [0.19], 2: [0.2]}) == 2  # one thread must win by 10%: early steps are noisy
    assert choose({1: [0.17], 2: [0.2]}) == 1


def _run(tmp_path, **overrides) -> dict:
    cfg = {**TINY_ARROWS, "save_root": str(tmp_path), "exp_name": "t", **overrides}
    assert run_here(write(tmp_path / "t.json", cfg)) == 0
    return json.loads((tmp_path / "t" / RECORD).read_text())


@pytest.mark.skipif(DEFAULT_THREADS < 2, reason="one core: nothing to choose")
def test_auto_measures_keeps_the_faster_and_a_resumed_run_reuses_it(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "MIN_PROBE_SECONDS", 0.0)  # the minimum rounds only
    record = _run(tmp_path, max_steps=2 * PROBE_ROUNDS + 2, save_steps=2 * PROBE_ROUNDS + 2)
    assert record["how"] == "measured" and record["cores"] == DEFAULT_THREADS
    timed = {int(n): t for n, t in record["step_seconds"].items()}
    assert set(timed) == {1, DEFAULT_THREADS} and all(len(t) == PROBE_ROUNDS for t in timed.values())
    assert record["torch_threads"] == choose(timed) == torch.get_num_threads()
    assert f"using {record['torch_threads']}" in capsys.readouterr().err
    # the resumed run: no new measurement, the stored count (even if this process now has another)
    torch.set_num_threads(1 if record["torch_threads"] != 1 else DEFAULT_THREADS)
    again = _run(tmp_path, max_steps=2 * PROBE_ROUNDS + 4, save_steps=2 * PROBE_ROUNDS + 2)
    assert again == record
    assert torch.get_num_threads() == record["torch_threads"]
    assert "measured before" in capsys.readouterr().err


@pytest.mark.skipif(DEFAULT_THREADS < 2, reason="one core: nothing to choose")
def test_short_steps_are_timed_for_more_rounds(tmp_path, monkeypatch):
    """Steps of a few ms are timed at the scheduler's granularity: rounds go on until the probe has run long
    enough (here: never), up to the cap."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "MIN_PROBE_SECONDS", 1e9)
    monkeypatch.setattr(threads, "MAX_PROBE_ROUNDS", PROBE_ROUNDS + 2)
    record = _run(tmp_path, max_steps=2 * PROBE_ROUNDS + 6, save_steps=100)
    assert record["how"] == "measured"
    assert all(len(t) == PROBE_ROUNDS + 2 for t in record["step_seconds"].values())


def test_a_number_sets_the_count_and_omp_num_threads_is_left_alone(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    torch.set_num_threads(DEFAULT_THREADS)
    record = _run(tmp_path / "a", torch_threads="1", max_steps=4)
    assert record["how"] == "config" and record["torch_threads"] == 1 == torch.get_num_threads()

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    torch.set_num_threads(DEFAULT_THREADS)
    record = _run(tmp_path / "b", max_steps=4)
    assert record["how"] == "OMP_NUM_THREADS" and torch.get_num_threads() == DEFAULT_THREADS  # not touched


@pytest.mark.parametrize("value", ["0", "many", "-2"])
def test_bad_torch_threads_is_one_line_exit_2(value, tmp_path, monkeypatch, capsys):
    assert_config_error(tmp_path, monkeypatch, capsys, {**TINY_ARROWS, "torch_threads": value}, "torch_threads", "auto")
