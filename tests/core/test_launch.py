"""The launch wrapper (`trainers/launch.py`): a preempted two-rank run exits 75 from the launch command and
resumes exactly; a killed launcher leaves no rank training on as an orphan."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch

from hf_experiments.core.launch import exit_code
from hf_experiments.core.run_folder import COMPLETE_MARKER, checkpoint_problem, last_good_checkpoint
from tests.helpers import ROOT, RUN, env, final_weights, free_port, write_config

LAUNCH = str(ROOT / "trainers" / "launch.py")
TIMING = ("runtime", "per_second", "time")


def test_exit_code_rules():
    assert exit_code(0, {}) == 0
    assert exit_code(1, {"rank-0": 75, "rank-1": 75}) == 75  # torchrun's 1 although every rank was preempted
    assert exit_code(1, {"rank-0": 75, "rank-1": 0}) == 75
    assert exit_code(-9, {"rank-0": 75, "rank-1": 75}) == 75  # launcher killed, ranks checkpointed
    assert exit_code(1, {"rank-0": 75, "rank-1": 1}) == 1  # a real failure wins
    assert exit_code(1, {"rank-0": 2, "rank-1": 2}) == 2
    assert exit_code(1, {}) == 1  # no rank said anything: the launcher's own status


def _cfg(tmp: Path, name: str, **extra) -> Path:
    cfg = dict(
        experiment="arrows",
        task="linear",
        matrix_n=4,
        matrix_k=2,
        num_vectors=512,
        n_val=32,
        model_preset="tiny",
        dropout=0.1,
        max_steps=60,
        save_steps=10,
        logging_steps=3,
        per_device_train_batch_size=8,
        learning_rate=3e-3,
        report_to="none",
        save_root=str(tmp / "out"),
        exp_name=name,
        save_total_limit=None,
        dataloader_num_workers=0,
    )
    return write_config(tmp / f"{name}.json", **{**cfg, **extra})


def _launch(cfg: Path) -> subprocess.Popen:
    cmd = [sys.executable, LAUNCH, "--multi_gpu", "--num_processes", "2", "--main_process_port", str(free_port())]
    return subprocess.Popen(
        [*cmd, RUN, "--config", str(cfg)], env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 300) -> None:
    t0 = time.time()
    while not path.exists():
        assert proc.poll() is None, proc.stdout.read()[-4000:]
        assert time.time() - t0 < timeout
        time.sleep(0.02)


def _log(run_dir: Path) -> list[dict]:
    state = json.loads((run_dir / "trainer_state.json").read_text())
    return [{k: v for k, v in h.items() if not any(t in k for t in TIMING)} for h in state["log_history"]]


@pytest.fixture(scope="module")
def two_rank_reference(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("ref2")
    proc = _launch(_cfg(tmp, "ref"))
    out = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, out[-4000:]
    return tmp / "out" / "ref"


def test_preempted_two_rank_run_exits_75_from_the_launch_command_and_resumes(tmp_path, two_rank_reference):
    cfg = _cfg(tmp_path, "run")
    run_dir = tmp_path / "out" / "run"
    proc = _launch(cfg)
    _wait_for(run_dir / "checkpoint-20" / COMPLETE_MARKER, proc)
    proc.send_signal(signal.SIGUSR1)  # to the launch command only, as SLURM's --signal=B:USR1 does
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 75, out[-4000:]
    assert "preempted" in out.splitlines()[-1]
    last = last_good_checkpoint(run_dir)
    assert 20 <= int(last.name.split("-")[1]) < 60 and not (run_dir / "metrics.json").exists()
    again = _launch(cfg)
    out = again.communicate(timeout=600)[0]
    assert again.returncode == 0, out[-4000:]
    wa, wb = final_weights(two_rank_reference), final_weights(run_dir)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert _log(two_rank_reference) == _log(run_dir)  # both ranks' logging windows were carried


def test_killed_launcher_leaves_no_orphan_rank(tmp_path):
    cfg = _cfg(tmp_path, "orphan", max_steps=5000, save_steps=20)
    run_dir = tmp_path / "out" / "orphan"
    proc = _launch(cfg)
    _wait_for(run_dir / "checkpoint-20" / COMPLETE_MARKER, proc)
    launcher = psutil.Process(proc.pid).children()[0]  # `accelerate launch` (torchrun's agent inside)
    ranks = launcher.children()
    assert len(ranks) == 2
    launcher.kill()  # SIGKILL: no chance to tell the ranks anything
    _, alive = psutil.wait_procs(ranks, timeout=120)
    assert not alive, "a rank kept training after its launcher died"
    proc.communicate(timeout=120)
    assert proc.returncode == 75  # the ranks got SIGTERM (parent-death signal), checkpointed and stopped
    last = last_good_checkpoint(run_dir)
    assert last is not None and checkpoint_problem(last) is None
