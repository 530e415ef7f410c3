"""Sweeps from Python, notebook first (modelscape's headline: the same code in a `.py` file and a notebook):
`run_sweep` takes a config dict (or file) plus live objects — a batch function, grabs, a model class, a loss or
optimizer defined in the notebook itself — and iterators, which may be generators or depend on the values of
earlier iterators (modelscape's "dynamic iterables").

Live objects that another process cannot import (notebook cells, `__main__`, lambdas) are registered under a
``live:`` name and the jobs run in this process, one after another; a subprocess engine is refused with the fix.
Objects of an importable module are named by their import path and go to any engine.

    from hf_experiments.sweeps import run_sweep
    sweep, table = run_sweep({"experiment": "mlp", "max_steps": 200}, batch_fn=my_bfn,
                             grabs={"w_norm": my_grab}, iterators={"width": [64, 256], "trial": range(3)})
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from hf_experiments.core.imports import LIVE_PREFIX, importable_spec, register_live
from hf_experiments.core.run_folder import write_json_atomic
from hf_experiments.core.seed_names import SEED_ALIASES

from .local import run_local
from .plan import Sweep, _config_keys, check_jobs, load_sweep_config, plan_sweep, write_jobs
from .results import collect_results, plot_results

# The original's iterator names (modelscape's job spec) -> ours.
ORIGINAL_AXIS_NAMES = {"ntrain": "n_samples", "bsz": "n_samples", "trials": "trial", "max_iter": "max_steps"}


def object_spec(obj: Any) -> str:
    """A config value for a function or class: a string as it is, an importable object's import path, else a
    ``live:`` name registered in this process."""
    if isinstance(obj, str):
        return obj
    if not callable(obj):
        raise ValueError(f"{obj!r} is not a function or class; expected a callable or an import path")
    return importable_spec(obj) or register_live(obj)


def our_key(key: str, valid: set[str]) -> str:
    """An iterator or config name as the original spells it (`N_SAMPLES`, `ntrain`, `LR`) -> ours."""
    for cand in (key, key.lower()):
        cand = ORIGINAL_AXIS_NAMES.get(cand, SEED_ALIASES.get(cand, (cand,))[0])
        if cand in valid or cand == "trial":
            return cand
    return key


def sweep_config(
    config: Mapping[str, Any] | str | Path,
    iterators: Mapping[str, Iterable[Any] | Callable[..., Iterable[Any]]] | None = None,
    batch_fn: Any = None,
    grabs: Mapping[str, Any] | Sequence[Any] | None = None,
    model_class: Any = None,
    loss: Any = None,
    optimizer: Any = None,
) -> dict[str, Any]:
    """The sweep config `run_sweep` runs: `config` with the objects named and the iterators as its grid.
    Iterator names that are not config keys become members of `batch_fn_kwargs` (offered by name to the batch
    function, the model class and the grabs)."""
    cfg = load_sweep_config(str(config)) if isinstance(config, (str, Path)) else dict(config)
    valid = _config_keys(cfg["experiment"]) if cfg.get("experiment") else set()
    cfg = {our_key(k, valid): v for k, v in cfg.items()}
    for key, obj in (("batch_fn", batch_fn), ("model_class", model_class), ("loss", loss), ("optimizer", optimizer)):
        if obj is not None:
            cfg[key] = object_spec(obj)
    if grabs:
        pairs = grabs.items() if isinstance(grabs, Mapping) else [(None, g) for g in grabs]
        specs = list(cfg.get("grabs") or [])
        specs += [f"{alias}={object_spec(fn)}" if alias else object_spec(fn) for alias, fn in pairs]
        cfg["grabs"] = specs
    if iterators:
        grid = dict(cfg.get("sweep") or {})
        for key, values in iterators.items():
            key = our_key(key, valid)
            if valid and key not in valid and key != "trial" and "." not in key:
                key = f"batch_fn_kwargs.{key}"
            grid[key] = values
        cfg["sweep"] = grid
    return cfg


def _uses_live(cfg: Mapping[str, Any]) -> bool:
    return LIVE_PREFIX in json.dumps({k: v for k, v in cfg.items() if k != "sweep"}, default=str)


def run_sweep(
    config: Mapping[str, Any] | str | Path,
    engine: str = "local",
    devices: Sequence[str] | None = None,
    engine_options: Mapping[str, Any] | None = None,
    dry_run: bool = False,
    collect_only: bool = False,
    rerun_finished: bool = False,
    name: str | None = None,
    *,
    iterators: Mapping[str, Iterable[Any] | Callable[..., Iterable[Any]]] | None = None,
    batch_fn: Any = None,
    grabs: Mapping[str, Any] | Sequence[Any] | None = None,
    model_class: Any = None,
    loss: Any = None,
    optimizer: Any = None,
) -> tuple[Sweep, Any]:
    """Plan, check, write and run a sweep, then collect its table and plots. Returns (sweep, results table).

    `iterators`, `batch_fn`, `grabs`, `model_class`, `loss` and `optimizer` take live Python objects (see the
    module docstring); without them this is the `trainers/sweep.py` command."""
    cfg = sweep_config(config, iterators, batch_fn, grabs, model_class, loss, optimizer)
    if _uses_live(cfg):
        subprocess_devices = devices is not None and (len(devices) > 1 or (devices and devices[0] != "cpu"))
        if engine != "local" or subprocess_devices:
            raise ValueError(
                f"engine={engine!r}, devices={devices!r}: the sweep uses functions defined in this notebook or "
                "script, which a job subprocess cannot import; run it in-process (engine='local', devices=None) "
                "or move the functions into an importable .py file"
            )
        devices = []  # in-process, also on a machine with several GPUs
    sweep = plan_sweep(cfg, name=name, run_user_code=not dry_run)  # a dry run calls no user code
    for job in sweep.jobs:  # W&B groups a sweep's runs under its name, unless the config names a group
        job.config.setdefault("wandb_group", sweep.name)
    check_jobs(sweep)
    if dry_run:
        for job in sweep.jobs:
            print(f"{job.index}\t{'finished' if job.finished else 'to run'}\t{job.name}\tseed={job.seed}")
        return sweep, None
    codes: dict[str, int] = {}
    if not collect_only:
        write_jobs(sweep)
        fresh = bool(sweep.base_config.get("fresh_start")) or rerun_finished
        if not fresh:
            _warn_stale(sweep)
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
                from .engines import get_engine

                codes = get_engine(engine, sweep.dir, dict(engine_options or {})).run(todo, cwd=str(Path.cwd()))
    df = collect_results(sweep, codes)
    plots = plot_results(sweep, df)
    counts = df["status"].value_counts().to_dict()
    print(
        f"[sweep] results: {sweep.dir / 'results.parquet'} ({counts}); plots: {[str(p) for p in plots]}",
        flush=True,
    )
    return sweep, df


def _warn_stale(sweep: Sweep) -> None:
    """One line naming the finished jobs that ran another version of a live function (same name, other source)."""
    stale: dict[str, list[str]] = {}
    for job in sweep.jobs:
        path = job.run_dir / "run_config.json"
        if not job.finished or not path.is_file():
            continue
        recorded = json.loads(path.read_text())
        for key in ("batch_fn", "model_class", "loss", "optimizer", "grabs"):
            now, then = job.config.get(key), recorded.get(key)
            if now != then and LIVE_PREFIX in json.dumps([now, then], default=str):
                stale.setdefault(key, []).append(job.name)
    for key, jobs in stale.items():
        print(
            f"[sweep] warning: {len(jobs)} finished job(s) ran another version of {key} ({jobs[0]}, ...); they are "
            "kept as they are: pass rerun_finished=True to run them with the current one",
            flush=True,
        )


def load_grabs(sweep: Sweep) -> dict[str, Any]:
    """{job name: that job's grabs.json (steps and values of every grab)} for the finished jobs that wrote one."""
    out = {}
    for job in sweep.jobs:
        path = job.run_dir / "grabs.json"
        if path.is_file():
            out[job.name] = json.loads(path.read_text())
    return out


__all__ = ["load_grabs", "object_spec", "run_sweep", "sweep_config"]
