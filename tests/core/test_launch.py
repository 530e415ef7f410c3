"""The launch wrapper (`trainers/launch.py`): a preempted two-rank run exits 75 from the launch command and
resumes exactly; a killed launcher leaves no rank training on as an orphan."""

from __future__ import annotations

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
from tests.helpers import ROOT, RUN, TINY_ARROWS, env, final_weights, free_port, logged_history, write_config

LAUNCH = str(ROOT / "trainers" / "launch.py")


def test_exit_code_rules():
    assert exit_code(0, {}) == 0
    assert exit_code(1, {"rank-0": 75, "rank-1": 75}) == 75  # torchrun's 1 although every rank was preempted
    assert exit_code(1, {"rank-0": 75, "rank-1": 0}) == 75
    assert exit_code(-9, {"rank-0": 75, "rank-1": 75}) == 75  # launcher killed, ranks checkpointed
    assert exit_code(1, {"rank-0": 75, "rank-1": 1}) == 1  # a real failure wins
    assert exit_code(1, {"rank-0": 2, "rank-1": 2}) == 2
    assert exit_code(1, {}) == 1  # no rank said anything: the launcher's own status
    assert exit_code(1, {"rank-0": 75}, n_ranks=2) == 1  # rank 1 died without a word: a crash
    assert exit_code(-9, {"rank-0": 75, "rank-1": 75}, n_ranks=2) == 75
    assert exit_code(-15, {}, n_ranks=0, forwarded=True) == 75  # preempted before any rank started
    assert exit_code(1, {"rank-0": 75}, n_ranks=2, forwarded=True) == 75  # rank 1 died of the signal itself
    assert exit_code(1, {"rank-0": 75, "rank-1": 1}, n_ranks=2, forwarded=True) == 1


def _cfg(tmp: Path, name: str, **extra) -> Path:
    cfg = {**TINY_ARROWS, "num_vectors": 512, "max_steps": 60, "save_steps": 10, "per_device_train_batch_size": 8}
    return write_config(tmp / f"{name}.json", **{**cfg, "save_root": str(tmp / "out"), "exp_name": name, **extra})


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
    assert logged_history(two_rank_reference) == logged_history(run_dir)  # both ranks' logging windows were carried


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
