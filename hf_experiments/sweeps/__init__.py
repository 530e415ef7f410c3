"""Grids of ordinary runs (modelscape's job iterator): planning, the local runner, submitit / Ray engines, the
results table and plots, the `trainers/sweep.py` command line, and `run_sweep` for notebooks and scripts."""

from .api import load_grabs, run_sweep

__all__ = ["load_grabs", "run_sweep"]
