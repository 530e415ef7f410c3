"""Running sweep jobs beyond this machine: SLURM through `submitit`, or Ray. No scheduler of our own.

Every engine runs the same unit as the local runner, `local.run_job_subprocess` (one job's run in a subprocess,
with its log file), and the results are read back from the run folders, so an engine only starts the jobs (and,
if asked, waits for them, with a bar of jobs done / total and the ETA). Engines: ``slurm`` (a submitit job
array), ``submitit_local`` / ``submitit_debug`` (the same code path on this machine) and ``ray`` (one Ray task
per job).

Design: `docs/sweeps_and_mlp.md`, section "How the engines run jobs".
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .local import PACKAGE_ROOT, run_job_subprocess, sweep_bar
from .plan import Job

POLL_SECONDS = 2.0  # how often a waiting submitit sweep looks for finished jobs (its bar's resolution)


def _log(job: Job) -> str:
    return str(job.run_dir.parent / "logs" / f"{job.name}.log")


class SubmititEngine:
    """Jobs as a submitit job array: SLURM (``cluster="slurm"``), or ``local``/``debug`` to try it here."""

    def __init__(self, folder: str | Path, cluster: str = "slurm", wait: bool = True, **parameters: Any) -> None:
        import submitit

        self.executor = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
        self.executor.update_parameters(**{"name": "hfe-sweep", **parameters})
        self.wait = wait

    def run(self, jobs: Sequence[Job], cwd: str | None = None) -> dict[str, int]:
        n = len(jobs)
        submitted = self.executor.map_array(
            run_job_subprocess,
            [str(j.config_path) for j in jobs],
            [cwd] * n,
            [None] * n,
            [_log(j) for j in jobs],
        )
        for job, sub in zip(jobs, submitted):
            print(f"[sweep] submitted {job.name} as {sub.job_id}", flush=True)
        if not self.wait:
            return {}
        from submitit.helpers import as_completed

        codes: dict[str, int] = {}
        name_of = {id(sub): job.name for job, sub in zip(jobs, submitted)}
        with sweep_bar(jobs) as bar:
            for sub in as_completed(submitted, poll_frequency=POLL_SECONDS):  # in the order they finish
                name = name_of[id(sub)]
                try:
                    codes[name] = int(sub.result())
                except Exception as e:  # a task that died (node failure, timeout) must not hide the others
                    print(f"[sweep] {name} failed: {e}", file=sys.stderr, flush=True)
                    codes[name] = 1
                bar.update(1)
        return {job.name: codes[job.name] for job in jobs}


class RayEngine:
    """One Ray task per job, on a running cluster (``address``) or a local one started for the sweep."""

    def __init__(
        self,
        address: str | None = None,
        num_gpus_per_job: float | None = None,
        num_cpus_per_job: float = 1,
        init_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        self.address, self.num_gpus, self.num_cpus = address, num_gpus_per_job, num_cpus_per_job
        self.init_kwargs = dict(init_kwargs or {})

    def run(self, jobs: Sequence[Job], cwd: str | None = None) -> dict[str, int]:
        import ray

        started = not ray.is_initialized()
        if started:
            env = {"PYTHONPATH": os.pathsep.join(p for p in (str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")) if p)}
            ray.init(
                address=self.address,
                include_dashboard=False,
                runtime_env={"env_vars": env},
                **self.init_kwargs,
            )
        try:
            gpus = (
                self.num_gpus if self.num_gpus is not None else (1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0)
            )
            remote = ray.remote(num_cpus=self.num_cpus, num_gpus=gpus)(run_job_subprocess)
            refs = {job.name: remote.remote(str(job.config_path), cwd, None, _log(job)) for job in jobs}
            name_of = {ref: name for name, ref in refs.items()}
            codes: dict[str, int] = {}
            pending = list(refs.values())
            with sweep_bar(jobs) as bar:
                while pending:  # in the order they finish
                    (ref,), pending = ray.wait(pending, num_returns=1)
                    try:
                        codes[name_of[ref]] = int(ray.get(ref))
                    except ray.exceptions.RayError as e:
                        print(f"[sweep] {name_of[ref]} failed: {e}", file=sys.stderr, flush=True)
                        codes[name_of[ref]] = 1
                    bar.update(1)
            return {name: codes[name] for name in refs}
        finally:
            if started:
                ray.shutdown()


def get_engine(name: str, sweep_dir: str | Path, options: Mapping[str, Any]) -> SubmititEngine | RayEngine:
    """``slurm``, ``submitit_local``, ``submitit_debug`` or ``ray``, configured by `options`."""
    options = dict(options)
    if name in ("slurm", "submitit_local", "submitit_debug"):
        cluster = {"slurm": "slurm", "submitit_local": "local", "submitit_debug": "debug"}[name]
        return SubmititEngine(Path(sweep_dir) / "submitit", cluster=cluster, **options)
    if name == "ray":
        return RayEngine(**options)
    raise ValueError(f"engine={name!r} is invalid; expected local, slurm, submitit_local, submitit_debug or ray")


__all__ = ["RayEngine", "SubmititEngine", "get_engine"]
