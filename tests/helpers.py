"""Shared helpers for tests that run `trainers/run.py` for real (in a subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN = str(ROOT / "trainers" / "run.py")


def write_config(path: Path, **cfg) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(cfg, indent=1))
    return path


def env() -> dict[str, str]:
    e = dict(os.environ)
    e.update(
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS="1",
        PYTHONPATH=str(ROOT) + os.pathsep + e.get("PYTHONPATH", ""),
    )
    return e


def run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, RUN, *args], capture_output=True, text=True, env=env(), timeout=timeout)


def free_port() -> int:
    """A TCP port nobody listens on now (for the rendezvous of a multi-rank launch)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_two_ranks(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """`accelerate launch --multi_gpu --num_processes 2 trainers/run.py ARGS` (two CPU ranks with gloo) on a
    fresh port: the default 29500 may still be held by an earlier launch, and the rendezvous then fails."""
    launcher = str(Path(sys.executable).parent / "accelerate")
    cmd = [
        launcher,
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--main_process_port",
        str(free_port()),
        RUN,
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, env=env(), timeout=timeout)


def popen(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, RUN, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env()
    )


def final_weights(run_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(run_dir / "model" / "model.safetensors"))


def logged_losses(run_dir: Path) -> list[tuple[int, float]]:
    """(step, loss) pairs of the training log, from the final checkpoint's trainer state."""
    ckpts = sorted(run_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    state = json.loads((ckpts[-1] / "trainer_state.json").read_text())
    return [(h["step"], h["loss"]) for h in state["log_history"] if "loss" in h]
