"""A run's final metrics (`metrics.json`) reach every `report_to` backend: read back from real TensorBoard event
files, at the last global step, under `train/final/<metric>`; and run files are 0644 under the usual umask."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest
import torch

from hf_experiments.core.reporting import headline_metrics
from hf_experiments.core.run_folder import write_json_atomic
from tests.mlp.helpers import run_here, tiny_mlp_config, write


def test_headline_metrics_are_the_scalar_results():
    metrics = {
        "eval_loss": 0.5,
        "acc": torch.tensor(0.25),
        "n": np.int64(3),
        "crossed": True,
        "loss_by_position": [1.0, 2.0],
        "signature": "nrefs:1|case:mixed",
        "step_to_loss_0.1": None,  # not reached
        "world_size": 2,
        "eval_runtime": 1.5,
        "eval_samples_per_second": 3.0,
        "epoch": 1.0,
    }
    assert headline_metrics(metrics) == {"eval_loss": 0.5, "acc": 0.25, "n": 3, "crossed": 1.0}


def test_final_metrics_are_in_the_tensorboard_event_files(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = tiny_mlp_config(tmp_path, exp_name="fm", report_to="tensorboard", loss_checkpoints=[10.0, 1e-9])
    assert run_here(write(tmp_path / "fm.json", cfg)) == 0
    run_dir = tmp_path / "fm"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    expected = headline_metrics(metrics)
    assert {"eval_loss", "step_to_loss_10", "final_ema_loss", "train_steps"} <= set(expected)

    (logdir,) = (run_dir / "runs").iterdir()
    events = EventAccumulator(str(logdir))
    events.Reload()
    final_tags = {t for t in events.Tags()["scalars"] if t.startswith("train/final/")}
    assert final_tags == {f"train/final/{k}" for k in expected}
    for key, value in expected.items():
        (point,) = events.Scalars(f"train/final/{key}")
        assert point.step == 20  # the last global step
        assert point.value == pytest.approx(value, rel=1e-6)
    state = json.loads((run_dir / "trainer_state.json").read_text())
    assert state["log_history"][-1]["final/eval_loss"] == metrics["eval_loss"]


def test_run_json_files_respect_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        write_json_atomic(tmp_path / "a.json", {"x": 1})
        assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644
        os.umask(0o077)
        write_json_atomic(tmp_path / "b.json", {"x": 1})
        assert stat.S_IMODE((tmp_path / "b.json").stat().st_mode) == 0o600
    finally:
        os.umask(old)
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 1}


def test_every_file_of_a_run_is_0644(tmp_path):
    old = os.umask(0o022)
    try:
        cfg = tiny_mlp_config(tmp_path, exp_name="modes", max_steps=4, save_steps=2, report_to="tensorboard")
        assert run_here(write(tmp_path / "modes.json", cfg)) == 0
    finally:
        os.umask(old)
    modes = {
        str(p.relative_to(tmp_path)): oct(stat.S_IMODE(p.stat().st_mode))
        for p in (tmp_path / "modes").rglob("*")
        if p.is_file()
    }
    assert {"modes/run_config.json", "modes/metrics.json", "modes/run-finished.json"} <= set(modes)
    assert any(k.endswith("checkpoint-complete.json") for k in modes)
    # safetensors >= 0.8 writes its files 0600 whatever the umask (safetensors/safetensors#782): our save_model
    # resets them
    assert any(k.endswith(".safetensors") for k in modes)
    assert {k: v for k, v in modes.items() if v != oct(0o644)} == {}
