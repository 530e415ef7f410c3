"""Two CPU ranks through the real `accelerate launch`: DDP with gloo, one run folder, the same update as one
process with the doubled batch."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers import final_weights, launch_two_ranks, run, write_config


def _config(tmp_path: Path, name: str, batch: int, **extra) -> Path:
    cfg = dict(
        experiment="arrows",
        task="primes",
        max_n_digits=2,
        n_pairs=1000,
        n_val=64,
        model_preset="tiny",
        dropout=0.0,
        max_steps=6,
        save_steps=3,
        logging_steps=1,
        optim="sgd",
        per_device_train_batch_size=batch,
        learning_rate=0.5,
        report_to="none",
        save_root=str(tmp_path / "out"),
        dataloader_num_workers=0,
    )
    return write_config(tmp_path / f"{name}.json", **{**cfg, **extra})


needs_accelerate = pytest.mark.skipif(
    shutil.which("accelerate", path=str(Path(sys.executable).parent)) is None,
    reason="accelerate CLI not installed in this environment",
)


def _launch_two_ranks(cfg: Path) -> subprocess.CompletedProcess:
    return launch_two_ranks("--config", str(cfg))


@needs_accelerate
def test_two_rank_accelerate_launch_matches_one_process_with_double_batch(tmp_path):
    res = _launch_two_ranks(_config(tmp_path, "ddp", 8))
    assert res.returncode == 0, res.stderr[-4000:]
    ddp_dir = tmp_path / "out" / "ddp"
    metrics = json.loads((ddp_dir / "metrics.json").read_text())
    assert metrics["world_size"] == 2  # `--cpu --num_processes 2` would have silently run one rank
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if p.name[0] != ".") == ["data", "ddp"]  # one run

    single = run("--config", str(_config(tmp_path, "single", 16)))
    assert single.returncode == 0, single.stderr[-4000:]
    a, b = final_weights(ddp_dir), final_weights(tmp_path / "out" / "single")
    for k in a:  # ranks see disjoint halves of the same global batch; DDP averages their gradients
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)


@needs_accelerate
def test_two_ranks_with_per_device_batch_size_match_one_process(tmp_path):
    """Each rank splits its 8 rows of the global batch 16 into micro-batches 3, 3, 2; one process splits all 16
    into 3, 3, 3, 3, 2, 2. Same update batches (our sampler draws them for all ranks), same updates; 100 rows =
    6 updates per epoch, so the 8 steps also cross an epoch boundary (each rank must reshuffle alike)."""
    micro = {"per_device_batch_size": 3, "n_pairs": 100, "max_steps": 8, "save_steps": 4}
    res = _launch_two_ranks(_config(tmp_path, "ddp", 8, **micro))
    assert res.returncode == 0, res.stderr[-4000:]
    ddp_dir = tmp_path / "out" / "ddp"
    metrics = json.loads((ddp_dir / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["epoch"] > 1
    single = run("--config", str(_config(tmp_path, "single", 16, **micro)))
    assert single.returncode == 0, single.stderr[-4000:]
    a, b = final_weights(ddp_dir), final_weights(tmp_path / "out" / "single")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)
