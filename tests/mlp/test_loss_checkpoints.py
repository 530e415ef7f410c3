"""Loss checkpoints: EMA smoothing, first crossing steps (absolute and relative), the stop, and a resume that
keeps what was already crossed."""

from __future__ import annotations

import json

import pytest

from hf_experiments.mlp.loss_checkpoints import LossThresholds, threshold_key
from tests.mlp.helpers import run_here, tiny_mlp_config, write


def test_ema_and_first_crossings_match_a_hand_computation():
    losses = [1.0, 0.8, 0.5, 0.3, 0.2, 0.4, 0.1, 0.05]
    tracker = LossThresholds([0.3, 0.6], ema_smoother=0.5)
    ema, crossed, done_at = None, {0.6: None, 0.3: None}, None
    for step, loss in enumerate(losses, start=1):
        ema = loss if ema is None else 0.5 * ema + 0.5 * loss
        for t in crossed:
            if crossed[t] is None and ema < t:
                crossed[t] = step
        done = tracker.update(step, loss)
        assert tracker.ema == pytest.approx(ema)
        if done and done_at is None:
            done_at = step
    assert tracker.crossed == crossed
    assert done_at == max(crossed.values())  # "all crossed" is reported exactly when the last one is
    metrics = tracker.metrics()
    assert metrics[threshold_key(0.3, False)] == crossed[0.3] and metrics["initial_loss"] == 1.0


def test_relative_thresholds_scale_with_the_initial_loss():
    a, b = (
        LossThresholds([0.5], relative=True, ema_smoother=0.0),
        LossThresholds([0.5], relative=True, ema_smoother=0.0),
    )
    for step, loss in enumerate([4.0, 3.0, 1.9, 1.0], start=1):
        a.update(step, loss)
        b.update(step, loss / 4)  # the same curve in other units crosses at the same step
    assert a.crossed == b.crossed == {0.5: 3}
    assert not LossThresholds([0.1]).all_crossed
    with pytest.raises(ValueError, match="ema_smoother=1"):
        LossThresholds([0.1], ema_smoother=1)


def test_state_dict_round_trip_continues_identically():
    losses = [2.0, 1.5, 1.2, 0.9, 0.7, 0.5, 0.4]
    whole = LossThresholds([1.0, 0.6], ema_smoother=0.7)
    for s, loss in enumerate(losses, 1):
        whole.update(s, loss)
    first = LossThresholds([1.0, 0.6], ema_smoother=0.7)
    for s, loss in enumerate(losses[:3], 1):
        first.update(s, loss)
    second = LossThresholds([1.0, 0.6], ema_smoother=0.7)
    second.load_state_dict(json.loads(json.dumps(first.state_dict())))  # as stored in trainer_state.json
    for s, loss in enumerate(losses[3:], 4):
        second.update(s, loss)
    assert second.crossed == whole.crossed and second.ema == pytest.approx(whole.ema)


def test_training_stops_once_every_threshold_is_crossed(tmp_path):
    cfg = tiny_mlp_config(
        tmp_path,
        exp_name="stop",
        max_steps=200,
        learning_rate=0.3,
        loss_checkpoints=[0.9, 0.7],
        loss_checkpoints_relative=True,
        ema_smoother=0.5,
        logging_steps=1,
    )
    assert run_here(write(tmp_path / "stop.json", cfg)) == 0
    m = json.loads((tmp_path / "stop" / "metrics.json").read_text())
    assert m["all_loss_checkpoints_crossed"] is True
    assert 1 <= m["step_to_rel_loss_0.9"] <= m["step_to_rel_loss_0.7"] == m["train_steps"] < 200
    assert m["final_ema_loss"] < 0.7 * m["initial_loss"]


def test_resumed_run_keeps_crossings_made_before_the_checkpoint(tmp_path):
    base = tiny_mlp_config(
        tmp_path,
        exp_name="resume",
        learning_rate=0.3,
        loss_checkpoints=[0.95],
        loss_checkpoints_relative=True,
        ema_smoother=0.0,
        stop_at_loss_checkpoints=False,
        save_steps=8,
    )
    assert run_here(write(tmp_path / "a.json", {**base, "max_steps": 8})) == 0
    before = json.loads((tmp_path / "resume" / "metrics.json").read_text())
    assert before["step_to_rel_loss_0.95"] is not None and before["step_to_rel_loss_0.95"] <= 8
    (tmp_path / "resume" / "metrics.json").unlink()
    assert run_here(write(tmp_path / "a.json", {**base, "max_steps": 16})) == 0  # resumes from checkpoint-8
    after = json.loads((tmp_path / "resume" / "metrics.json").read_text())
    assert after["train_steps"] == 16
    assert after["step_to_rel_loss_0.95"] == before["step_to_rel_loss_0.95"]
    assert after["initial_loss"] == before["initial_loss"]
