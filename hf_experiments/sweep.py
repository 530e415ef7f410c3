"""Grids of runs (modelscape's job iterator): a config's ``"sweep"`` grid becomes one ordinary run per point.

    python trainers/sweep.py --config configs/mlp_mup_sweep.json [--engine local|slurm|ray] [--key value ...]

A config names a grid, ``"sweep": {"width": [256, 1024, 4096], "trial": [0, 1, 2]}``; its cartesian product
(first key slowest) becomes jobs. Each job is a run of ``trainers/run.py`` with its own config file
``<save_root>/<sweep>/jobs/<job>.json`` (the base config, the job's values, ``exp_name=<sweep>/<job>`` and its
seed), so its run folder is ``<save_root>/<sweep>/<job>/`` with everything a run writes. The job name is
built from its values (``width=256,trial=0``), so editing the grid never renames finished jobs.

- Grid values: a list, or ``{"range": [start, stop(, step)]}``, ``{"linspace": [a, b, n]}``,
  ``{"geomspace": [a, b, n]}``, or ``{"call": "package.module:function", "kwargs": {...}}`` (any iterable the
  function returns or yields). From Python, any iterable, generators included.
- ``trial``: swept like any key. If the experiment has no ``trial`` option, it only names the job and
  changes its seed.
- Seeds (``"sweep_seed"``): ``"per_job"`` (default) derives each job's seed from the config's ``seed`` and the
  job's values; ``"fixed"`` gives every job the config's seed (the ``mlp`` experiment then still separates
  trials, since its data and initial weights depend on ``(seed, trial)``: widths then share data per trial).
  The original derived seeds from the job's index and device; we derive them from the values so that a job
  keeps its seed when the grid is edited or when a different device picks it from the queue.
- Finished jobs (their run folder has ``metrics.json``) are skipped when the sweep is rerun; interrupted
  ones resume from their last complete checkpoint, as any run does.
- Results: ``results.parquet`` and ``results.csv`` (one row per job: the swept values, seed, status and every
  number of its ``metrics.json``), and ``plots/<metric>_vs_<key>.png`` for the metrics named in
  ``"sweep_metrics"`` (default ``["eval_loss"]``): mean over trials with the standard deviation as error bars,
  one line per combination of the other swept values.

Local runner: jobs run one after another inside this process when there is at most one GPU (tiny jobs pay
Python's start-up once), or one subprocess per device at a time when several are named (``--devices 0,1``,
or automatically every visible GPU). Beyond one machine, `sweep_engines` hands the same job files to SLURM
(submitit) or Ray.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import hashlib
import importlib.util
import itertools
import json
import math
import queue
import re
import sys
import tempfile
import threading
import traceback
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .config import ConfigError, RunArguments, parse_config_strict
from .run_folder import write_json_atomic
from .seed_names import SEED_ALIASES, translate_seed_names

SWEEP_KEYS = ("sweep", "sweep_metrics", "sweep_seed")
NOT_SWEEPABLE = ("experiment", "exp_name", "save_root", "output_dir")
ROOT = Path(__file__).resolve().parents[1]
RUN_SCRIPT = ROOT / "trainers" / "run.py"
PREEMPTED_EXIT_CODE = 75


# --- the grid -----------------------------------------------------------------------------------------------


def _plain(v: Any) -> Any:
    """numpy scalars -> Python numbers, tuples -> lists (job values must be JSON)."""
    if hasattr(v, "item") and not isinstance(v, (list, tuple, dict, str)):
        return v.item()
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def expand_values(key: str, spec: Any) -> list[Any]:
    """One grid axis -> its list of values (see the module docstring for the accepted forms)."""
    import numpy as np

    if isinstance(spec, Mapping):
        if len(spec) == 1 and "range" in spec:
            values = list(range(*spec["range"]))
        elif len(spec) == 1 and "linspace" in spec:
            values = np.linspace(*spec["linspace"]).tolist()
        elif len(spec) == 1 and "geomspace" in spec:
            values = np.geomspace(*spec["geomspace"]).tolist()
        elif "call" in spec and set(spec) <= {"call", "kwargs"}:
            from .batch_functions import import_object

            values = list(import_object(spec["call"], f"sweep.{key}.call")(**spec.get("kwargs", {})))
        else:
            raise ValueError(
                f"sweep.{key}={dict(spec)!r} is invalid; expected a list, or one of "
                "{'range': [start, stop, step]}, {'linspace': [a, b, n]}, {'geomspace': [a, b, n]}, "
                "{'call': 'package.module:function', 'kwargs': {...}}"
            )
    elif isinstance(spec, (str, bytes)) or not isinstance(spec, Iterable):
        raise ValueError(f"sweep.{key}={spec!r} is invalid; expected a list of values")
    else:
        values = list(spec)  # lists, tuples, generators, ranges...
    if not values:
        raise ValueError(f"sweep.{key} is empty; expected at least one value")
    return [_plain(v) for v in values]


def expand_grid(grid: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The cartesian product of the axes, first key slowest: [{key: value, ...}, ...]."""
    if not isinstance(grid, Mapping) or not grid:
        raise ValueError(f"sweep={grid!r} is invalid; expected a non-empty object {{key: [values]}}")
    axes = {key: expand_values(key, spec) for key, spec in grid.items()}
    return [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())]


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, list):
        return "-".join(_fmt(x) for x in v)
    return str(v)


def job_name(values: Mapping[str, Any]) -> str:
    """``width=256,trial=0``; characters unsafe in paths or shells become ``_``; long names are shortened."""
    name = ",".join(f"{k}={_fmt(v)}" for k, v in values.items())
    name = re.sub(r"[^A-Za-z0-9._=,+-]", "_", name)
    if len(name) > 120:
        name = name[:100] + "-" + _digest(values)
    return name


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:10]


def derive_job_seed(base_seed: int, values: Mapping[str, Any]) -> int:
    """A 31-bit seed from the base seed and the job's values (independent of grid order and device)."""
    blob = json.dumps({"seed": int(base_seed), "values": values}, sort_keys=True, default=str).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:4], "big") >> 1


# --- planning -----------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Job:
    """One point of the grid: its values, name, seed, config file and run folder."""

    index: int
    values: dict[str, Any]
    name: str
    seed: int
    config: dict[str, Any]
    config_path: Path
    run_dir: Path

    @property
    def finished(self) -> bool:
        return (self.run_dir / "metrics.json").is_file()


@dataclasses.dataclass
class Sweep:
    """A planned sweep: the folder, the grid, the jobs and what to plot."""

    name: str
    dir: Path
    grid: dict[str, list[Any]]
    jobs: list[Job]
    metrics: list[str]
    base_config: dict[str, Any]

    def swept_keys(self) -> list[str]:
        return list(self.grid)


def _config_keys(experiment: str) -> set[str]:
    from .registry import get_experiment

    exp = get_experiment(experiment)
    return {
        f.name
        for d in (RunArguments, exp.model_args, exp.data_args, exp.training_args)
        for f in dataclasses.fields(d)
    }


def parse_overrides(argv: Sequence[str]) -> dict[str, Any]:
    """``--key value [value ...]`` / ``--key=value`` / ``--flag`` -> {key: JSON value (else the string)}."""
    out: dict[str, Any] = {}
    key: str | None = None
    for tok in argv:
        if tok.startswith("--"):
            key, sep, val = tok[2:].partition("=")
            key = key.replace("-", "_")
            out[key] = [val] if sep else []
            if sep:  # --key=value takes no further values
                key = None
        elif key is None:
            raise ValueError(f"command line: {tok!r} is unexpected; expected --key value")
        else:
            out[key].append(tok)
    decoded: dict[str, Any] = {}
    for k, vals in out.items():
        items = [_decode(v) for v in vals]
        decoded[k] = True if not items else items[0] if len(items) == 1 else items
    return decoded


def _decode(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def load_sweep_config(config_path: str | None, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The config file with seed names translated and overrides applied (overrides win)."""
    from .config import _load_config_file

    config: dict[str, Any] = {}
    if config_path:
        config, _ = translate_seed_names(_load_config_file(config_path))
    if overrides:
        over, _ = translate_seed_names(dict(overrides))
        config.update(over)
    if "sweep" in config and isinstance(config["sweep"], str):
        config["sweep"] = json.loads(config["sweep"])
    return config


def plan_sweep(config: Mapping[str, Any], name: str | None = None) -> Sweep:
    """Expand the grid of `config` into jobs (nothing is written). Raises ValueError on a bad grid."""
    config = dict(config)
    grid_spec = config.pop("sweep", None)
    metrics = config.pop("sweep_metrics", None) or ["eval_loss"]
    seed_mode = config.pop("sweep_seed", "per_job")
    if grid_spec is None:
        raise ValueError('sweep: missing; expected "sweep": {key: [values], ...} in the config')
    if seed_mode not in ("per_job", "fixed"):
        raise ValueError(f"sweep_seed={seed_mode!r} is invalid; expected 'per_job' or 'fixed'")
    if isinstance(metrics, str):
        metrics = [metrics]
    experiment = config.get("experiment")
    if not experiment:
        raise ValueError("experiment: missing; expected the registered experiment name in the config")
    valid = _config_keys(experiment)
    grid_spec = {SEED_ALIASES.get(k, (k,))[0]: v for k, v in dict(grid_spec).items()}
    for key in grid_spec:
        if key in NOT_SWEEPABLE:
            raise ValueError(f"sweep.{key}: not sweepable; the sweep sets it for every job")
        if key not in valid and key != "trial":
            import difflib

            close = difflib.get_close_matches(key, sorted(valid), n=1)
            raise ValueError(
                f"sweep.{key}: unknown key for experiment {experiment!r}"
                + (f"; did you mean {close[0]!r}?" if close else "")
            )
    if seed_mode == "fixed" and "trial" in grid_spec and "trial" not in valid:
        raise ValueError(
            f"sweep_seed='fixed' with a swept 'trial': experiment {experiment!r} has no trial option,"
            " so every trial would be identical; use sweep_seed='per_job'"
        )
    points = expand_grid(grid_spec)  # generators are consumed here, once
    grid = {k: _unique([p[k] for p in points]) for k in grid_spec}

    sweep_name = name or config.get("exp_name") or "sweep"
    save_root = Path(config.get("save_root", "outputs")).resolve()
    sweep_dir = save_root / sweep_name
    base_seed = int(config.get("seed", 42))
    names = [job_name(p) for p in points]
    if len(set(names)) != len(names):  # values that print alike (e.g. floats equal to 6 digits)
        names = [f"{n}-{_digest(p)}" for n, p in zip(names, points)]
    jobs = []
    for i, (values, jname) in enumerate(zip(points, names)):
        seed = (
            int(values["seed"])
            if "seed" in values
            else (base_seed if seed_mode == "fixed" else derive_job_seed(base_seed, values))
        )
        job_cfg = {
            **config,
            **{k: v for k, v in values.items() if k in valid},
            "exp_name": f"{sweep_name}/{jname}",
            "save_root": str(save_root),
            "seed": seed,
        }
        jobs.append(
            Job(i, values, jname, seed, job_cfg, sweep_dir / "jobs" / f"{jname}.json", sweep_dir / jname)
        )
    return Sweep(sweep_name, sweep_dir, grid, jobs, list(metrics), config)


def _unique(values: list[Any]) -> list[Any]:
    seen: dict[str, Any] = {}
    for v in values:
        seen.setdefault(json.dumps(v, sort_keys=True, default=str), v)
    return list(seen.values())


def check_jobs(sweep: Sweep) -> None:
    """Parse every job's config exactly as `trainers/run.py` will (strict), before anything is written."""
    with tempfile.TemporaryDirectory() as tmp:
        for job in sweep.jobs:
            path = Path(tmp) / "job.json"
            path.write_text(json.dumps(job.config))
            try:
                parse_config_strict(["--config", str(path)])
            except ConfigError as e:
                raise ConfigError(e.key, e.value, f"{e.allowed} (sweep job {job.name})") from None


def write_jobs(sweep: Sweep) -> None:
    """`sweep.json` (the plan) and one config file per job."""
    for job in sweep.jobs:
        write_json_atomic(job.config_path, job.config)
    write_json_atomic(
        sweep.dir / "sweep.json",
        {
            "name": sweep.name,
            "grid": sweep.grid,
            "metrics": sweep.metrics,
            "base_config": sweep.base_config,
            "jobs": [
                {
                    "index": j.index,
                    "name": j.name,
                    "values": j.values,
                    "seed": j.seed,
                    "config": str(j.config_path),
                    "run_dir": str(j.run_dir),
                }
                for j in sweep.jobs
            ],
        },
    )


# --- the local runner ---------------------------------------------------------------------------------------


def _load_run_main():
    spec = importlib.util.spec_from_file_location("_hfe_trainers_run", RUN_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def run_in_process(job: Job) -> int:
    """Run one job inside this process (no interpreter start-up); returns its exit status."""
    import torch

    run_main = _load_run_main()
    try:
        return int(run_main(["--config", str(job.config_path)]) or 0)
    except SystemExit as e:  # parse_config exits 2 on a bad config
        return int(e.code) if isinstance(e.code, int) else 1
    except Exception:  # one failing job must not stop the sweep
        traceback.print_exc()
        return 1
    finally:
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def default_devices() -> list[str]:
    """Every visible GPU when there are several (one process each); otherwise none (in-process)."""
    import torch

    n = torch.cuda.device_count()
    return [str(i) for i in range(n)] if n > 1 else []


def run_local(
    jobs: Sequence[Job],
    devices: Sequence[str] | None = None,
    log_dir: Path | None = None,
    cwd: str | None = None,
) -> dict[str, int]:
    """Run `jobs` here: in-process one after another (no devices, or one), else a worker thread per device
    entry, each starting one `trainers/run.py` subprocess at a time with that device (``"cpu"`` hides the
    GPUs; name a device twice to run two jobs on it). Returns {job name: exit status}."""
    from .sweep_engines import run_job_subprocess

    devices = list(default_devices() if devices is None else devices)
    codes: dict[str, int] = {}
    if len(devices) <= 1:
        for job in jobs:
            print(f"[sweep] job {job.index}: {job.name}", flush=True)
            if devices and devices[0] != "cpu":
                codes[job.name] = run_job_subprocess(
                    str(job.config_path), cwd, devices[0], _log_path(log_dir, job)
                )
            else:
                codes[job.name] = run_in_process(job)
        return codes
    todo: queue.Queue[Job] = queue.Queue()
    for job in jobs:
        todo.put(job)
    lock = threading.Lock()

    def worker(device: str) -> None:
        while True:
            try:
                job = todo.get_nowait()
            except queue.Empty:
                return
            print(f"[sweep] job {job.index}: {job.name} on device {device}", flush=True)
            code = run_job_subprocess(str(job.config_path), cwd, device, _log_path(log_dir, job))
            with lock:
                codes[job.name] = code

    threads = [threading.Thread(target=worker, args=(d,), daemon=True) for d in devices]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return codes


def _log_path(log_dir: Path | None, job: Job) -> str | None:
    return str(log_dir / f"{job.name}.log") if log_dir is not None else None


# --- results ------------------------------------------------------------------------------------------------


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flatten(v, f"{prefix}{k}/"))
        elif not isinstance(v, list):
            out[f"{prefix}{k}"] = v
    return out


def job_status(job: Job, code: int | None = None) -> str:
    if job.finished:
        return "finished"
    if code == PREEMPTED_EXIT_CODE:
        return "preempted"
    if code is not None and code != 0:
        return "failed"
    return "incomplete" if job.run_dir.exists() else "pending"


def collect_results(sweep: Sweep, codes: Mapping[str, int] | None = None):
    """One row per job (swept values, job, seed, status, metrics); writes results.parquet and results.csv."""
    import pandas as pd

    rows = []
    for job in sweep.jobs:
        row: dict[str, Any] = {
            k: (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in job.values.items()
        }
        row.update(job=job.name, seed=job.seed, status=job_status(job, (codes or {}).get(job.name)))
        if job.finished:
            metrics = json.loads((job.run_dir / "metrics.json").read_text())
            row.update({k: v for k, v in _flatten(metrics).items() if k not in row})
        rows.append(row)
    df = pd.DataFrame(rows)
    for col in df.columns:  # parquet needs one type per column
        kinds = {type(v) for v in df[col] if v is not None and not (isinstance(v, float) and math.isnan(v))}
        if len(kinds) > 1 and not kinds <= {int, float, bool}:
            df[col] = df[col].map(lambda v: None if v is None else str(v))
    sweep.dir.mkdir(parents=True, exist_ok=True)
    df.to_parquet(sweep.dir / "results.parquet", index=False)
    df.to_csv(sweep.dir / "results.csv", index=False)
    return df


def plot_results(sweep: Sweep, df) -> list[Path]:
    """For each metric and each numeric swept key: metric vs key, mean over trials (std as error bars),
    one line per combination of the other swept values. Returns the written PNG paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import pandas as pd

    done = df[df["status"] == "finished"] if "status" in df else df
    keys = [k for k in sweep.swept_keys() if k != "trial"]
    out: list[Path] = []
    for metric in sweep.metrics:
        if metric not in done or not pd.api.types.is_numeric_dtype(done[metric]):
            continue
        for x in keys:
            if not pd.api.types.is_numeric_dtype(done[x]) or done[x].nunique() < 2:
                continue
            others = [k for k in keys if k != x]
            fig, ax = plt.subplots(figsize=(6, 4))
            groups = done.groupby(others, dropna=False) if others else [((), done)]
            for label, sub in groups:
                stats = sub.groupby(x)[metric].agg(["mean", "std", "count"]).reset_index()
                label = label if isinstance(label, tuple) else (label,)
                text = ", ".join(f"{k}={v}" for k, v in zip(others, label)) or metric
                ax.errorbar(
                    stats[x], stats["mean"], yerr=stats["std"].fillna(0), marker="o", capsize=3, label=text
                )
            xs = done[x].to_numpy(dtype=float)
            if (xs > 0).all() and xs.max() / xs.min() >= 10:
                ax.set_xscale("log", base=2 if np.allclose(np.log2(xs), np.round(np.log2(xs))) else 10)
            ys = done[metric].to_numpy(dtype=float)
            ys = ys[np.isfinite(ys)]
            if len(ys) and (ys > 0).all() and ys.max() / ys.min() >= 100:
                ax.set_yscale("log")
            n_trials = done["trial"].nunique() if "trial" in done else 1
            ax.set_xlabel(x)
            ax.set_ylabel(metric)
            ax.set_title(
                f"{sweep.name}: {metric} vs {x}"
                + (f" (mean ± std over {n_trials} trials)" if n_trials > 1 else ""),
                fontsize=9,
            )
            ax.legend(fontsize=7)
            fig.tight_layout()
            path = sweep.dir / "plots" / f"{re.sub(r'[^A-Za-z0-9._=-]', '_', metric)}_vs_{x}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(path, dpi=120)
            plt.close(fig)
            out.append(path)
    return out


# --- entry point --------------------------------------------------------------------------------------------


def run_sweep(
    config: Mapping[str, Any],
    engine: str = "local",
    devices: Sequence[str] | None = None,
    engine_options: Mapping[str, Any] | None = None,
    dry_run: bool = False,
    collect_only: bool = False,
    rerun_finished: bool = False,
    name: str | None = None,
):
    """Plan, check, write and run a sweep, then collect its table and plots. Returns (sweep, results)."""
    sweep = plan_sweep(config, name=name)
    check_jobs(sweep)
    if dry_run:
        for job in sweep.jobs:
            print(f"{job.index}\t{'finished' if job.finished else 'to run'}\t{job.name}\tseed={job.seed}")
        return sweep, None
    codes: dict[str, int] = {}
    if not collect_only:
        write_jobs(sweep)
        fresh = bool(sweep.base_config.get("fresh_start")) or rerun_finished
        todo = [j for j in sweep.jobs if fresh or not j.finished]
        skipped = len(sweep.jobs) - len(todo)
        print(
            f"[sweep] {sweep.name}: {len(sweep.jobs)} jobs, {skipped} already finished, {len(todo)} to run",
            flush=True,
        )
        if rerun_finished and not sweep.base_config.get("fresh_start"):
            for job in todo:  # a rerun starts over: each job moves its old folder aside
                job.config["fresh_start"] = True
                write_json_atomic(job.config_path, job.config)
        if todo:
            if engine == "local":
                codes = run_local(todo, devices, log_dir=sweep.dir / "logs", cwd=str(Path.cwd()))
            else:
                from .sweep_engines import get_engine

                codes = get_engine(engine, sweep.dir, dict(engine_options or {})).run(
                    todo, cwd=str(Path.cwd())
                )
    df = collect_results(sweep, codes)
    plots = plot_results(sweep, df)
    counts = df["status"].value_counts().to_dict()
    print(
        f"[sweep] results: {sweep.dir / 'results.parquet'} ({counts}); plots: {[str(p) for p in plots]}",
        flush=True,
    )
    return sweep, df


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
        raw = json.loads(Path(known.config).read_text())
    except (OSError, json.JSONDecodeError):
        return False  # run.py reports the problem itself
    return isinstance(raw, dict) and "sweep" in raw


def build_arg_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="trainers/sweep.py",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", required=True, help='JSON config with a "sweep" grid.')
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
    p.add_argument(
        "--name", default=None, help="Sweep folder name (default: exp_name, else the config's stem)."
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """`trainers/sweep.py`: options above, then `--key value` overrides applied to every job."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_arg_parser()
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


__all__ = [
    "Job",
    "Sweep",
    "check_jobs",
    "collect_results",
    "config_has_sweep",
    "derive_job_seed",
    "expand_grid",
    "expand_values",
    "job_name",
    "load_sweep_config",
    "main",
    "parse_overrides",
    "plan_sweep",
    "plot_results",
    "run_in_process",
    "run_local",
    "run_sweep",
    "write_jobs",
]
