"""Shared pieces of the MLP / sweep tests: a tiny config and an in-process `trainers/run.py`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch


def tiny_mlp_config(save_root: Path, **overrides: Any) -> dict[str, Any]:
    """Seconds on a CPU: width 16, 4 input dimensions, 32 samples a step, 20 steps."""
    cfg = {
        "experiment": "mlp",
        "save_root": str(save_root),
        "width": 16,
        "depth": 2,
        "dim": 4,
        "target_monomials": ["0", "1"],
        "n_samples": 32,
        "n_test": 64,
        "learning_rate": 0.1,
        "max_steps": 20,
        "loss_checkpoints": [1e-9],
        "logging_steps": 10,
        "save_steps": 1000,
        "report_to": "none",
        "per_device_eval_batch_size": 64,
    }
    cfg.update(overrides)
    return cfg


def write(path: Path, cfg: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(cfg, indent=1))
    return path


def run_here(config_path: Path, *extra: str) -> int:
    """`trainers/run.py --config <path>` inside this process (as the sweep's sequential runner does)."""
    from hf_experiments.cli import main

    try:
        return int(main(["--config", str(config_path), *extra]) or 0)
    except SystemExit as e:
        return int(e.code)


def build_experiment(cfg: dict[str, Any], tmp: Path):
    """Parse `cfg` strictly and return the experiment object with its data built (no training)."""
    from hf_experiments.core.parsing import parse_config_strict

    path = write(tmp / f"cfg_{abs(hash(json.dumps(cfg, sort_keys=True)))}.json", cfg)
    run_cfg = parse_config_strict(["--config", str(path)])
    exp = run_cfg.experiment_cls(run_cfg)
    data = exp.build_data()
    return exp, data


# Batch functions named by import path in the tests ---------------------------------------------------------


def linear_target(n: int, rng: np.random.Generator, dim: int = 3, slope: float = 1.0):
    """y = slope * x_0: a user batch function taking a config value (dim) and a batch_fn_kwargs entry."""
    x = rng.standard_normal((n, dim))
    return x, slope * x[:, 0]


def modelscape_style_bfn(bsz: int, gen: torch.Generator, X=None, y=None, dim: int = 3, **kwargs):
    """The original's factory form: returns batch_fn(step) -> (X, y)."""

    def batch_fn(step: int):
        xb = torch.randn(bsz, dim, generator=gen)
        return xb, xb.sum(1)

    return batch_fn
