"""Grids of ordinary runs (modelscape's job iterator): planning, the local runner, submitit / Ray engines, the
results table and plots, and the `trainers/sweep.py` command line."""
