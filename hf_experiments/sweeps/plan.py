"""Planning a sweep: the config with its overrides, one `Job` (config file, run folder, seed) per
grid point, and the strict check of every job's config before anything is written.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hf_experiments.core.config import ConfigError, RunArguments
from hf_experiments.core.parsing import parse_config_strict
from hf_experiments.core.run_folder import SECRET_KEY_RE, write_json_atomic
from hf_experiments.core.seed_names import SEED_ALIASES, translate_seed_names

from .grid import NOT_SWEEPABLE, Unexpanded, _digest, derive_job_seed, expand_grid, job_name


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
    from hf_experiments.core.registry import get_experiment

    exp = get_experiment(experiment)
    return {
        f.name for d in (RunArguments, exp.model_args, exp.data_args, exp.training_args) for f in dataclasses.fields(d)
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
    from hf_experiments.core.config_files import load_config_file

    config: dict[str, Any] = {}
    if config_path:
        config, _ = translate_seed_names(load_config_file(config_path))
    if overrides:
        over, _ = translate_seed_names(dict(overrides))
        config.update(over)
    if "sweep" in config and isinstance(config["sweep"], str):
        config["sweep"] = json.loads(config["sweep"])
    return config


def plan_sweep(config: Mapping[str, Any], name: str | None = None, run_user_code: bool = True) -> Sweep:
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
    secret = next((k for k in config if SECRET_KEY_RE.search(k)), None)
    if secret is not None:  # job files and sweep.json are written for every job (and shared with the results)
        raise ValueError(f"{secret}: not in a sweep config (it would be written into every job file); set HF_TOKEN")
    if config.get("gpu") is not None:
        raise ValueError(
            f"gpu={config['gpu']!r}: not for a sweep; the local runner places jobs with --devices 0,1,... and "
            "submitit / Ray with their engine options"
        )
    valid = _config_keys(experiment)
    grid_spec = {SEED_ALIASES.get(k, (k,))[0]: v for k, v in dict(grid_spec).items()}
    for key in grid_spec:
        if key in NOT_SWEEPABLE:
            raise ValueError(f"sweep.{key}: not sweepable; the sweep sets it for every job")
        parent = key.split(".", 1)[0]
        if "." in key and parent in valid and parent.endswith("_kwargs"):
            continue  # a member of a keyword-argument object: "batch_fn_kwargs.num_blocks"
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
    points = expand_grid(grid_spec, run_user_code)  # generators are consumed here, once
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
            **{k: v for k, v in values.items() if k in valid and not isinstance(v, Unexpanded)},
            "exp_name": f"{sweep_name}/{jname}",
            "save_root": str(save_root),
            "seed": seed,
        }
        for key, value in values.items():  # dotted keys set one member of a keyword-argument object
            if key not in valid and "." in key:
                parent, member = key.split(".", 1)
                base = job_cfg.get(parent) or {}
                job_cfg[parent] = {**(json.loads(base) if isinstance(base, str) else base), member: value}
        jobs.append(Job(i, values, jname, seed, job_cfg, sweep_dir / "jobs" / f"{jname}.json", sweep_dir / jname))
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
