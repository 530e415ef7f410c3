"""Never lose or corrupt a run: finished reruns change nothing, a run interrupted after training only redoes the
evaluation, damaged checkpoints are skipped with one line, preemption signals from start to finish exit 75, one
process per run folder, no secret on disk, a full disk is one line. Tiny arrows runs, in-process where possible."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from transformers import TrainerCallback

from hf_experiments.arrows.experiment import ArrowsExperiment
from hf_experiments.core import runner
from hf_experiments.core.run_folder import (
    COMPLETE_MARKER,
    checkpoint_problem,
    last_good_checkpoint,
    move_aside,
)
from hf_experiments.core.run_lock import RunLock
from tests.helpers import RUN, TINY_ARROWS, env, final_weights, logged_history, write_config
from tests.helpers import TIMING_KEYS as TIMING

STEPS, SAVE = TINY_ARROWS["max_steps"], TINY_ARROWS["save_steps"]


def _cfg(tmp: Path, name: str = "run", **extra) -> Path:
    cfg = {**TINY_ARROWS, "save_root": str(tmp / "out"), "exp_name": name}
    return write_config(tmp / f"{name}.json", **{**cfg, **extra})


def _main(cfg: Path, *extra: str) -> int:
    return runner.main(["--config", str(cfg), *extra])


def _metrics(run_dir: Path) -> dict:
    m = json.loads((run_dir / "metrics.json").read_text())
    return {k: v for k, v in m.items() if not any(t in k for t in TIMING)}


def _assert_same_run(a: Path, b: Path) -> None:
    wa, wb = final_weights(a), final_weights(b)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert logged_history(a) == logged_history(b)
    assert _metrics(a) == _metrics(b)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("reference")
    assert _main(_cfg(tmp)) == 0
    return tmp / "out" / "run"


# ---------------------------------------------------------------- 1. reruns after the final checkpoint


def test_finished_run_rerun_twice_is_bitwise_unchanged(tmp_path, reference, capsys):
    cfg = _cfg(tmp_path)
    assert _main(cfg) == 0
    out = tmp_path / "out"
    before = _snapshot(out)
    for _ in range(2):
        assert _main(cfg) == 0
        assert "is finished (same config): nothing to do" in capsys.readouterr().out
        assert _snapshot(out) == before
    _assert_same_run(reference, out / "run")


def test_changed_config_after_the_end_only_reevaluates(tmp_path, reference):
    """Negative control of the finished check (another config is not "finished"), and the fenced resume: a
    checkpoint at max_steps trains no further step (before the fix: checkpoint-13, then 14, ...)."""
    cfg = _cfg(tmp_path)
    assert _main(cfg) == 0
    assert _main(cfg, "--eval_steps", "5") == 0
    run_dir = tmp_path / "out" / "run"
    assert sorted(p.name for p in run_dir.glob("checkpoint-*")) == [f"checkpoint-{s}" for s in (12, 4, 8)]
    state = json.loads((run_dir / "trainer_state.json").read_text())
    assert state["global_step"] == STEPS
    _assert_same_run(reference, run_dir)


def test_sigterm_during_final_evaluation_exits_75_then_rerun_equals_uninterrupted(tmp_path, reference, monkeypatch):
    original = ArrowsExperiment.evaluate

    def preempted_evaluate(self, trainer, data):
        signal.raise_signal(signal.SIGTERM)  # delivered here, in the middle of the final evaluation
        return original(self, trainer, data)

    monkeypatch.setattr(ArrowsExperiment, "evaluate", preempted_evaluate)
    cfg = _cfg(tmp_path)
    assert _main(cfg) == 75
    run_dir = tmp_path / "out" / "run"
    assert not (run_dir / "metrics.json").exists() and not (run_dir / "model").exists()
    monkeypatch.setattr(ArrowsExperiment, "evaluate", original)
    assert _main(cfg) == 0
    assert not (run_dir / f"checkpoint-{STEPS + 1}").exists()
    _assert_same_run(reference, run_dir)


def test_a_growing_epoch_run_with_a_fractional_last_epoch_trains_no_step_after_its_end(tmp_path, monkeypatch):
    """The data cache's epochs (`GrowingEpochsMixin`): 2.5 epochs end inside the third; a rerun after a stop in
    the final evaluation must not step again into that epoch."""
    from hf_experiments.blotch.experiment import BlotchExperiment
    from tests.helpers import TINY_DATA_CACHE

    settings = {**TINY_DATA_CACHE, "num_train_epochs": 2.5, "save_root": str(tmp_path / "out")}
    ref_cfg = write_config(tmp_path / "ref.json", **{**settings, "exp_name": "ref"})
    assert _main(ref_cfg) == 0
    cfg = write_config(tmp_path / "c.json", **{**settings, "exp_name": "g"})
    original = BlotchExperiment.evaluate
    monkeypatch.setattr(BlotchExperiment, "evaluate", lambda *a: signal.raise_signal(signal.SIGTERM))
    assert _main(cfg) == 75
    run_dir = tmp_path / "out" / "g"
    steps = sorted(int(p.name.split("-")[1]) for p in run_dir.glob("checkpoint-*"))
    monkeypatch.setattr(BlotchExperiment, "evaluate", original)
    assert _main(cfg) == 0
    assert sorted(int(p.name.split("-")[1]) for p in run_dir.glob("checkpoint-*")) == steps
    assert json.loads((run_dir / "trainer_state.json").read_text())["global_step"] == steps[-1]
    # The final evaluation blotches at random: equal only if the checkpoint's RNG state was restored.
    _assert_same_run(tmp_path / "out" / "ref", run_dir)


# ---------------------------------------------------------------- 2. damaged checkpoints


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _edit_global_step(path: Path) -> None:
    state = json.loads(path.read_text())
    state["global_step"] += 1
    path.write_text(json.dumps(state))


DAMAGE = [
    ("model.safetensors", _truncate, "bytes"),
    ("model.safetensors", Path.unlink, "missing"),
    ("model.safetensors", _flip_byte, "SHA-256"),
    ("optimizer.pt", _truncate, "bytes"),
    ("optimizer.pt", Path.unlink, "missing"),
    ("optimizer.pt", _flip_byte, "SHA-256"),
    ("scheduler.pt", Path.unlink, "missing"),
    ("rng_state.pth", _truncate, "bytes"),
    ("rng_state.pth", Path.unlink, "missing"),
    ("trainer_state.json", Path.unlink, "missing"),
    ("trainer_state.json", _truncate, "bytes"),
    ("trainer_state.json", _edit_global_step, ""),
    ("logging-window-rank0.json", Path.unlink, "missing"),
]


@pytest.mark.parametrize(("name", "damage", "says"), DAMAGE, ids=[f"{n}-{d.__name__}" for n, d, _ in DAMAGE])
def test_every_kind_of_damage_is_found(tmp_path, reference, name, damage, says):
    import shutil

    ckpt = tmp_path / "checkpoint-8"
    shutil.copytree(reference / "checkpoint-8", ckpt)
    assert checkpoint_problem(ckpt) is None
    damage(ckpt / name)
    problem = checkpoint_problem(ckpt)
    assert problem is not None and problem.startswith(name) and says in problem


def test_a_damaged_extra_file_such_as_the_data_cache_is_found(tmp_path, reference):
    """Whatever a trainer adds to its checkpoints (`write_checkpoint_extras`: the data cache's rows) is in the
    record too."""
    import shutil

    from hf_experiments.core.run_folder import complete_checkpoint

    ckpt = tmp_path / "checkpoint-8"
    shutil.copytree(reference / "checkpoint-8", ckpt)
    (ckpt / "data_cache").mkdir()
    (ckpt / "data_cache" / "rows.parquet").write_bytes(b"PAR1" + bytes(range(200)))
    complete_checkpoint(ckpt, 8, should_save=True, save_total_limit=None)
    assert checkpoint_problem(ckpt) is None
    _truncate(ckpt / "data_cache" / "rows.parquet")
    assert checkpoint_problem(ckpt).startswith("data_cache/rows.parquet: ")


def test_unrecorded_marker_of_earlier_releases_is_trusted_and_a_wrong_step_is_not(tmp_path, reference):
    import shutil

    ckpt = tmp_path / "checkpoint-8"
    shutil.copytree(reference / "checkpoint-8", ckpt)
    (ckpt / COMPLETE_MARKER).write_text(json.dumps({"global_step": 8, "time": 0}))  # no file records
    assert checkpoint_problem(ckpt) is None
    (ckpt / COMPLETE_MARKER).write_text(json.dumps({"global_step": 7, "time": 0}))
    assert "not the folder's step" in checkpoint_problem(ckpt)


@pytest.mark.parametrize(("name", "damage", "says"), DAMAGE, ids=[f"{n}-{d.__name__}" for n, d, _ in DAMAGE])
def test_damaged_newest_checkpoint_falls_back_with_one_line(
    tmp_path, reference, name, damage, says, monkeypatch, caplog
):
    cfg = _cfg(tmp_path)
    run_dir = tmp_path / "out" / "run"
    original = ArrowsExperiment.evaluate
    monkeypatch.setattr(ArrowsExperiment, "evaluate", lambda *a: signal.raise_signal(signal.SIGTERM))
    assert _main(cfg) == 75  # trained to the end, stopped in the final evaluation
    monkeypatch.setattr(ArrowsExperiment, "evaluate", original)
    damage(run_dir / "checkpoint-12" / name)
    caplog.clear()
    assert _main(cfg) == 0
    lines = [r.getMessage() for r in caplog.records if "damaged checkpoint" in r.getMessage()]
    assert len(lines) == 1 and "\n" not in lines[0], lines
    assert f"checkpoint-12: {name}" in lines[0] and "falling back" in lines[0]
    assert any("resuming from" in r.getMessage() and "checkpoint-8" in r.getMessage() for r in caplog.records)
    assert [p.name[:14] for p in (run_dir / "damaged").iterdir()] == ["checkpoint-12-"]  # kept, not resumed
    _assert_same_run(reference, run_dir)


def test_restore_from_a_damaged_checkpoint_is_a_config_error(tmp_path, reference, capsys):
    import shutil

    ckpt = tmp_path / "checkpoint-8"
    shutil.copytree(reference / "checkpoint-8", ckpt)
    _flip_byte(ckpt / "optimizer.pt")
    assert _main(_cfg(tmp_path, "restored"), "--restore_from", str(ckpt)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("config error: restore_from=") and "optimizer.pt" in err[0]
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- 3. signals outside the training loop


def test_sigterm_during_imports_exits_75_and_writes_nothing(tmp_path):
    cfg = _cfg(tmp_path)
    proc = subprocess.Popen([sys.executable, RUN, "--config", str(cfg)], env=env(), stderr=subprocess.PIPE)
    time.sleep(0.3)  # the interpreter is up; torch/transformers are still importing (seconds)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 75
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("phase", ["build_data", "build_model"])
def test_sigterm_during_setup_exits_75(tmp_path, monkeypatch, phase, reference):
    original = getattr(ArrowsExperiment, phase)

    def preempted(self):
        signal.raise_signal(signal.SIGUSR1)
        return original(self)

    monkeypatch.setattr(ArrowsExperiment, phase, preempted)
    cfg = _cfg(tmp_path)
    assert _main(cfg) == 75
    monkeypatch.setattr(ArrowsExperiment, phase, original)
    assert _main(cfg) == 0
    _assert_same_run(reference, tmp_path / "out" / "run")


def test_main_gives_back_the_callers_signal_handlers(tmp_path):
    mine = signal.getsignal(signal.SIGTERM)
    assert _main(_cfg(tmp_path)) == 0
    assert signal.getsignal(signal.SIGTERM) is mine


# ---------------------------------------------------------------- 5. the logging window


def _preempt_at_step_5(tmp_path: Path, monkeypatch) -> tuple[Path, Path]:
    from hf_experiments.core import trainer as trainer_module

    class SignalAtStep5(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == 5:
                signal.raise_signal(signal.SIGTERM)

    original_init = trainer_module.ExperimentTrainer.__init__

    def init(self, *a, **k):
        original_init(self, *a, **k)
        self.add_callback(SignalAtStep5())

    monkeypatch.setattr(trainer_module.ExperimentTrainer, "__init__", init)
    cfg = _cfg(tmp_path)
    assert _main(cfg) == 75
    run_dir = tmp_path / "out" / "run"
    assert (run_dir / "checkpoint-6" / COMPLETE_MARKER).is_file()  # off-schedule: the step the signal ended
    monkeypatch.setattr(trainer_module.ExperimentTrainer, "__init__", original_init)
    return cfg, run_dir


def test_preemption_resume_logs_what_an_uninterrupted_run_logs(tmp_path, reference, monkeypatch):
    """A preemption in step 6 (logging window 4..6) then a rerun: the loss logged at step 6 averages steps 4-6
    as in the uninterrupted run, and `train_loss` covers all 12 steps."""
    cfg, run_dir = _preempt_at_step_5(tmp_path, monkeypatch)
    assert _main(cfg) == 0
    _assert_same_run(reference, run_dir)


def test_negative_control_without_the_window_the_log_differs(tmp_path, reference, monkeypatch):
    cfg, run_dir = _preempt_at_step_5(tmp_path, monkeypatch)
    ckpt = run_dir / "checkpoint-6"
    (ckpt / "logging-window-rank0.json").unlink()
    (ckpt / COMPLETE_MARKER).write_text(json.dumps({"global_step": 6, "time": 0}))  # as an older release's
    assert _main(cfg) == 0
    wa, wb = final_weights(reference), final_weights(run_dir)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)  # the weights are exact either way
    assert logged_history(reference) != logged_history(run_dir)  # but the logged losses are not


# ---------------------------------------------------------------- 6. one process per run folder


def test_second_process_on_a_locked_folder_exits_with_one_line(tmp_path, capsys):
    cfg = _cfg(tmp_path)
    lock = RunLock(tmp_path / "out" / "run")
    lock.acquire()
    try:
        assert _main(cfg) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "is in use by" in err[0]
        assert f"pid {os.getpid()} on host {socket.gethostname()}" in err[0]
        assert not (tmp_path / "out" / "run").exists()  # nothing written
    finally:
        lock.release()
    assert _main(cfg) == 0  # released: the folder is free again
    assert not lock.holder_path.exists()


def test_two_real_processes_one_trains(tmp_path, capsys):
    cfg = _cfg(tmp_path, max_steps=400, save_steps=100)
    first = subprocess.Popen([sys.executable, RUN, "--config", str(cfg)], env=env(), stderr=subprocess.DEVNULL)
    holder = tmp_path / "out" / ".run.lock.holder"
    t0 = time.time()
    while not holder.exists():
        assert first.poll() is None and time.time() - t0 < 120
        time.sleep(0.05)
    assert _main(cfg) == 2  # the second command, while the first trains
    assert f"is in use by pid {first.pid}" in capsys.readouterr().err
    assert first.wait(timeout=300) == 0


# ---------------------------------------------------------------- 7. paths


def test_fresh_start_twice_in_one_second_keeps_both_old_folders(tmp_path):
    run_dir = tmp_path / "run"
    moved = []
    for i in range(3):
        run_dir.mkdir()
        (run_dir / "n.txt").write_text(str(i))
        moved.append(move_aside(run_dir))
    assert len(set(moved)) == 3 and all(p.parent == tmp_path for p in moved)
    assert sorted(p.joinpath("n.txt").read_text() for p in moved) == ["0", "1", "2"]


# ---------------------------------------------------------------- 8. secrets


def test_no_secret_in_any_written_file(tmp_path):
    secrets = {"HF_TOKEN": "hf_SECRETenv0123456789", "WANDB_API_KEY": "wandbSECRET0123456789abcdef"}
    hub_token = "hf_SECRETcli9876543210"
    cfg = _cfg(tmp_path, report_to="tensorboard")
    res = subprocess.run(
        [sys.executable, RUN, "--config", str(cfg), "--hub_token", hub_token],
        env={**env(), **secrets},
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "training_args.bin" for p in files) and any("tfevents" in p.name for p in files)
    for secret in [*secrets.values(), hub_token]:
        leaked = [str(p) for p in files if secret.encode() in p.read_bytes()]
        assert not leaked, (secret, leaked)
    args = torch.load(tmp_path / "out" / "run" / "model" / "training_args.bin", weights_only=False)
    assert args.hub_token is None


# ---------------------------------------------------------------- 10. disk full


def test_disk_full_while_checkpointing_is_one_line_and_resumable(tmp_path, reference, monkeypatch, capsys):
    real_save = torch.save

    def full_disk(obj, f, *a, **k):
        if "checkpoint-8" in str(f):
            raise OSError(errno.ENOSPC, "No space left on device", str(f))
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", full_disk)
    cfg = _cfg(tmp_path)
    assert _main(cfg) == runner.DISK_FULL_EXIT_CODE
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("disk full")]
    run_dir = tmp_path / "out" / "run"
    assert len(err) == 1 and "checkpoint-8" in err[0]
    assert f"last complete checkpoint: {run_dir / 'checkpoint-4'}" in err[0]
    assert not (run_dir / "checkpoint-8").exists()  # the partial checkpoint freed its space
    monkeypatch.setattr(torch, "save", real_save)  # space freed
    assert _main(cfg) == 0
    _assert_same_run(reference, run_dir)


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir()
    if os.geteuid() != 0:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)]).returncode == 0


def test_a_real_full_disk(tmp_path, reference):
    """A 1.5-checkpoint tmpfs (where this machine lets us mount one): the second checkpoint does not fit."""
    ckpt_bytes = sum(p.stat().st_size for p in (reference / "checkpoint-4").rglob("*") if p.is_file())
    small = tmp_path / "small"
    if not _mount_tmpfs(small, str(int(ckpt_bytes * 1.5) + 200_000)):
        pytest.skip("cannot mount a small filesystem here (needs root)")
    try:
        cfg = _cfg(tmp_path, save_root=str(small), dataloader_num_workers=0)
        res = subprocess.run([sys.executable, RUN, "--config", str(cfg)], env=env(), capture_output=True, text=True)
        assert res.returncode == runner.DISK_FULL_EXIT_CODE, res.stderr[-3000:]
        lines = [ln for ln in res.stderr.splitlines() if ln.startswith("disk full")]
        assert len(lines) == 1 and "last complete checkpoint" in lines[0], res.stderr[-3000:]
        assert last_good_checkpoint(small / "run") is not None
    finally:
        subprocess.run(["umount", str(small)])
