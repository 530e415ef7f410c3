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


TIMING_KEYS = ("runtime", "per_second", "time", "seconds")


def logged_history(run_dir: Path) -> list[dict]:
    """The whole training log of a finished run (`<run>/trainer_state.json`: losses, final summary, evaluations),
    timing keys aside: what an interrupted-then-resumed run must reproduce exactly."""
    state = json.loads((run_dir / "trainer_state.json").read_text())
    return [{k: v for k, v in h.items() if not any(t in k for t in TIMING_KEYS)} for h in state["log_history"]]


# Tiny runs shared by the resume/fault tests and the fault campaign (`benchmarks/core/fault_injection.py`).
TINY_ARROWS = dict(
    experiment="arrows",
    task="linear",
    matrix_n=4,
    matrix_k=2,
    num_vectors=256,
    n_val=32,
    model_preset="tiny",
    dropout=0.1,  # a resume that lost the RNG state would diverge
    max_steps=12,
    save_steps=4,
    logging_steps=3,  # not a divisor of save_steps: checkpoints fall inside logging windows
    per_device_train_batch_size=16,
    learning_rate=3e-3,
    report_to="none",
    save_total_limit=None,
    dataloader_num_workers=0,
)
TINY_DATA_CACHE = dict(  # blotch with axe + internalize rounds over a data cache that grows between epochs
    experiment="blotch",
    max_num=9,
    max_ents=3,
    init_samples=64,
    max_samples=96,
    val_samples=16,
    ood_samples=0,
    d_model=16,
    n_heads=2,
    n_layers=1,
    h_mult=2,
    max_posencs=64,
    blotch_p_min=0.0,
    blotch_p_max=0.4,
    n_btokens=3,
    drop_p=0.1,
    batch_size=16,
    per_device_eval_batch_size=16,
    num_train_epochs=3,
    logging_steps=1,
    save_steps=4,
    save_total_limit=None,
    report_to="none",
    lr=0.01,
    gen_eval_samples=4,
    max_eval_batches=1,
    axe_loops=1,
    axe_tol=10.0,
    abs_axe_tol=True,
    internalize_steps=1,
    star_loops=1,
    aug_temp=1.0,
    manip_batch_size=8,
    history_eval_samples=8,
    dataloader_num_workers=0,
)


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def assert_config_error(tmp_path: Path, monkeypatch, capsys, cfg: dict, key: str, words: str) -> None:
    """Run `cfg` in-process (`hf_experiments.cli.main`): one line `config error: ...key...words...`, exit 2,
    and no file written under `tmp_path` (the config itself is written to `tmp_path/cfgs/bad.json` first)."""
    from hf_experiments import cli

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = tmp_path / "cfgs" / "bad.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps({"save_root": str(tmp_path / "out"), **cfg}))
    monkeypatch.chdir(tmp_path)
    before = files_under(tmp_path)
    code = cli.main(["--config", str(path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1, err
    assert err[0].startswith("config error: ") and key in err[0] and words in err[0], err[0]
    assert files_under(tmp_path) == before
