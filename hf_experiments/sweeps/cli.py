"""Grids of runs (modelscape's job iterator): a config's ``"sweep"`` grid becomes one ordinary run per point.

    python trainers/sweep.py --config configs/mlp_mup_sweep.json [--engine local|slurm|ray] [--key value ...]

Each point of the grid's cartesian product is a job: a run of ``trainers/run.py`` with its own config file and
run folder, named after its values and seeded from them. Rerunning skips finished jobs and resumes interrupted
ones; the results are collected into a table and plots. Jobs run on this machine (`hf_experiments.sweeps.local`)
or through SLURM or Ray (`hf_experiments.sweeps.engines`).

Design: `docs/sweeps_and_mlp.md`, section "Sweeps".
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from hf_experiments.core.config import ConfigError
from hf_experiments.core.config_files import load_config_file
from hf_experiments.core.runner import PREEMPTED_EXIT_CODE

from .api import run_sweep
from .plan import load_sweep_config, parse_overrides


def config_has_sweep(argv: Sequence[str]) -> bool:
    """Whether a `trainers/run.py` command line is a sweep: its config has a "sweep" key, or --sweep is given.

    Lets `trainers/run.py` hand such commands to `main` (job configs never contain "sweep": no recursion).
    """
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    known, rest = pre.parse_known_args(list(argv))
    if any(tok == "--sweep" or tok.startswith("--sweep=") for tok in rest):
        return True
    if not known.config or not Path(known.config).is_file():
        return False
    try:
        raw = load_config_file(known.config)
    except ConfigError:
        return False  # the run's parser reports the problem itself
    return isinstance(raw, dict) and "sweep" in raw


def build_arg_parser(prog: str = "trainers/sweep.py") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", required=True, help='JSON or YAML config with a "sweep" grid.')
    p.add_argument(
        "--engine",
        choices=("local", "slurm", "ray", "submitit_local", "submitit_debug"),
        default="local",
        help="Who runs the jobs (default: this machine).",
    )
    p.add_argument(
        "--devices",
        default=None,
        help="Local runner: comma-separated devices, one job at a time each (e.g. 0,1 or cpu,cpu). "
        "Default: every GPU when there are several, else in-process one after another.",
    )
    p.add_argument(
        "--engine_options",
        default=None,
        help="JSON object for the engine: submitit parameters (timeout_min, slurm_partition, "
        "gpus_per_node, ...) or Ray options (address, num_gpus_per_job, num_cpus_per_job).",
    )
    p.add_argument("--dry_run", action="store_true", help="List the jobs and their seeds; run nothing.")
    p.add_argument("--collect_only", action="store_true", help="Only rebuild the table and plots.")
    p.add_argument(
        "--rerun_finished",
        action="store_true",
        help="Run finished jobs again too (their old folders are moved aside).",
    )
    p.add_argument("--name", default=None, help="Sweep folder name (default: exp_name, else the config's stem).")
    return p


def main(argv: Sequence[str] | None = None, prog: str = "trainers/sweep.py") -> int:
    """`trainers/sweep.py` (`hfe sweep`): options above, then `--key value` overrides applied to every job."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_arg_parser(prog)
    args, rest = parser.parse_known_args(argv)
    try:
        config = load_sweep_config(args.config, parse_overrides(rest))
        name = args.name or config.get("exp_name") or Path(args.config).stem
        devices = [d.strip() for d in args.devices.split(",") if d.strip()] if args.devices else None
        options = json.loads(args.engine_options) if args.engine_options else {}
        _, df = run_sweep(
            config,
            engine=args.engine,
            devices=devices,
            engine_options=options,
            dry_run=args.dry_run,
            collect_only=args.collect_only,
            rerun_finished=args.rerun_finished,
            name=name,
        )
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    except (ValueError, json.JSONDecodeError) as e:
        print(f"sweep error: {e}", file=sys.stderr)
        return 2
    if df is None:
        return 0
    with contextlib.suppress(KeyError):
        if (df["status"] == "finished").all():
            return 0
        if (df["status"] == "preempted").any():
            return PREEMPTED_EXIT_CODE
    return 1
