"""Run a grid of runs (a config with a "sweep" key) and collect their results table and plots.

    python trainers/sweep.py --config configs/mlp_mup_sweep.json [--engine local|slurm|ray] [--key value ...]
    python trainers/sweep.py --config configs/mlp_mup_sweep.json --dry_run        # list jobs and seeds
    python trainers/sweep.py --config configs/mlp_mup_sweep.json --collect_only   # table and plots only

Rerunning the command skips finished jobs and resumes interrupted ones. See `docs/sweeps_and_mlp.md`.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hf_experiments.sweeps.cli import main

if __name__ == "__main__":
    sys.exit(main())
