"""The command line of `trainers/run.py` and `python -m hf_experiments`: a config with a `"sweep"` grid runs
every job of it (`sweeps.cli`), any other config is one run (`core.runner`)."""

from __future__ import annotations

import sys

from hf_experiments.core.runner import main as run_main
from hf_experiments.sweeps.cli import config_has_sweep
from hf_experiments.sweeps.cli import main as sweep_main


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if config_has_sweep(argv) and "--list" not in argv:  # job configs never contain "sweep": no recursion
        return sweep_main(argv)
    return run_main(argv)
