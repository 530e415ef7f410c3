"""Never lose a run: a killed run, rerun with the same command, ends exactly where an uninterrupted one does."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
import torch

from hf_experiments.core.run_folder import COMPLETE_MARKER, last_complete_checkpoint
from tests.helpers import final_weights, logged_losses, popen, run, write_config

STEPS, SAVE = 36, 12


def _config(tmp_path: Path, name: str, **extra) -> Path:
    # dropout > 0 so that a resume which did not restore the RNG state would diverge.
    cfg = dict(
        experiment="arrows",
        task="primes",
        max_n_digits=2,
        n_pairs=1500,
        n_val=64,
        model_preset="tiny",
        dropout=0.1,
        max_steps=STEPS,
        save_steps=SAVE,
        logging_steps=1,
        per_device_train_batch_size=32,
        learning_rate=3e-3,
        report_to="none",
        save_root=str(tmp_path / "out"),
        save_total_limit=None,
        dataloader_num_workers=0,
    )
    return write_config(tmp_path / f"{name}.json", **{**cfg, **extra})


# Micro-batches of 11, 11, 10 rows drawn by our own batch sampler (not Trainer's); 800 rows = 25 updates per
# epoch, so the run crosses an epoch boundary after the kill (at step 24) and the resumed sampler must also
# reshuffle for the next epoch as the uninterrupted one does.
MICRO = {"per_device_batch_size": 12, "n_pairs": 800}


def _wait_for(path: Path, proc, timeout: float = 300) -> None:
    t0 = time.time()
    while not path.exists():
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() - t0 < timeout
        time.sleep(0.01)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("ref")
    res = run("--config", str(_config(tmp, "ref")))
    assert res.returncode == 0, res.stderr[-3000:]
    return tmp / "out" / "ref"


def _assert_same_run(a: Path, b: Path) -> None:
    wa, wb = final_weights(a), final_weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    assert logged_losses(a) == logged_losses(b)


@pytest.fixture(scope="module")
def uninterrupted_micro(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("ref_micro")
    res = run("--config", str(_config(tmp, "ref", **MICRO)))
    assert res.returncode == 0, res.stderr[-3000:]
    return tmp / "out" / "ref"


def _kill_after_second_checkpoint(cfg: Path, run_dir: Path, sig: int) -> int:
    proc = popen("--config", str(cfg))
    _wait_for(run_dir / f"checkpoint-{2 * SAVE}" / COMPLETE_MARKER, proc)
    proc.send_signal(sig)
    return proc.wait(timeout=300)


def test_sigkill_then_rerun_equals_uninterrupted(tmp_path, uninterrupted):
    cfg = _config(tmp_path, "killed")
    run_dir = tmp_path / "out" / "killed"
    _kill_after_second_checkpoint(cfg, run_dir, signal.SIGKILL)
    assert not (run_dir / "metrics.json").exists()  # it really was cut short
    # A checkpoint cut short (no marker) is ignored when choosing where to resume.
    partial = run_dir / f"checkpoint-{2 * SAVE + 1}"
    partial.mkdir(exist_ok=True)
    assert last_complete_checkpoint(run_dir).name == f"checkpoint-{2 * SAVE}"
    res = run("--config", str(cfg))  # the same command
    assert res.returncode == 0, res.stderr[-3000:]
    assert "resuming from" in res.stderr
    _assert_same_run(uninterrupted, run_dir)


def test_negative_control_resume_without_data_position_differs(tmp_path, uninterrupted):
    """The comparison can fail: resuming weights/optimizer but replaying the epoch from its start diverges."""
    cfg = _config(tmp_path, "control")
    run_dir = tmp_path / "out" / "control"
    _kill_after_second_checkpoint(cfg, run_dir, signal.SIGKILL)
    res = run("--config", str(cfg), "--ignore_data_skip", "true")
    assert res.returncode == 0, res.stderr[-3000:]
    with pytest.raises(AssertionError):
        _assert_same_run(uninterrupted, run_dir)


def test_sigterm_checkpoints_cleanly_and_resumes(tmp_path, uninterrupted):
    cfg = _config(tmp_path, "term")
    run_dir = tmp_path / "out" / "term"
    code = _kill_after_second_checkpoint(cfg, run_dir, signal.SIGTERM)
    assert code == 75  # preempted: "try again"
    last = last_complete_checkpoint(run_dir)
    state = json.loads((last / "trainer_state.json").read_text())
    assert 2 * SAVE < state["global_step"] < STEPS  # a checkpoint at the step the signal arrived, off-schedule
    assert not (run_dir / "metrics.json").exists()
    res = run("--config", str(cfg))
    assert res.returncode == 0, res.stderr[-3000:]
    wa, wb = final_weights(uninterrupted), final_weights(run_dir)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_sigkill_with_micro_batching_then_rerun_equals_uninterrupted(tmp_path, uninterrupted_micro):
    cfg = _config(tmp_path, "killed", **MICRO)
    run_dir = tmp_path / "out" / "killed"
    _kill_after_second_checkpoint(cfg, run_dir, signal.SIGKILL)
    assert not (run_dir / "metrics.json").exists()
    res = run("--config", str(cfg))
    assert res.returncode == 0, res.stderr[-3000:]
    assert "resuming from" in res.stderr
    state = json.loads((run_dir / f"checkpoint-{STEPS}" / "trainer_state.json").read_text())
    assert state["epoch"] > 1  # the resumed part crossed into the next epoch
    _assert_same_run(uninterrupted_micro, run_dir)
