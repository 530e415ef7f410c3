"""Train a set of `trainers/run.py` runs as child processes, a few at a time: the engine of the figure and
comparison commands (`trainers/blotch_figures.py`, `trainers/cmp_methods.py`).

A finished run (its `metrics.json` exists) is reused only if it was made with the same values; an interrupted one
resumes from its last checkpoint on the next call, because each child is an ordinary run folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


class ChildRun(Protocol):
    """What `run_missing` needs of a run: its folder name, its command line and a check of a finished folder."""

    name: str

    def command(self, save_root: str, overrides: Sequence[str] = ()) -> list[str]: ...

    def check_finished(self, folder: Path, overrides: Sequence[str] = ()) -> None: ...


def run_missing(
    specs: Sequence[ChildRun],
    save_root: str,
    jobs: int = 1,
    overrides: Sequence[str] = (),
    desc: str = "runs",
) -> None:
    """Train every run without ``metrics.json``, ``jobs`` at a time with the cores split between them; a finished
    run must have been made with the same values (``check_finished`` raises ValueError otherwise). On an error or
    Ctrl-C the running trainings are stopped (each resumes from its last checkpoint on the next call)."""
    from tqdm.auto import tqdm

    root_dir = Path(save_root)
    todo = []
    for spec in specs:
        if (root_dir / spec.name / "metrics.json").exists():
            spec.check_finished(root_dir / spec.name, overrides)
        else:
            todo.append(spec)
    threads = max(1, (os.cpu_count() or 1) // max(1, jobs))
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    repo = Path(__file__).resolve().parents[2]
    logs = root_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    running: list[tuple[ChildRun, subprocess.Popen, Any]] = []
    pending, failed = list(todo), []
    with tqdm(total=len(todo), desc=desc, unit="run") as bar:
        try:
            while pending or running:
                while pending and len(running) < jobs:
                    spec = pending.pop(0)
                    log = open(logs / f"{spec.name}.log", "w")  # closed when the run ends
                    cmd = spec.command(save_root, overrides)
                    running.append((spec, subprocess.Popen(cmd, cwd=repo, env=env, stdout=log, stderr=log), log))
                time.sleep(1)
                for spec, proc, log in [item for item in running if item[1].poll() is not None]:
                    running.remove((spec, proc, log))
                    log.close()
                    if proc.returncode != 0:
                        failed.append(spec.name)
                    bar.update(1)
                    bar.set_postfix_str(spec.name)
        finally:
            for _, proc, log in running:  # interrupted: stop the children, so no second trainer meets them later
                proc.terminate()
                proc.wait()
                log.close()
    if failed:
        raise RuntimeError(f"runs failed: {', '.join(failed)} (logs in {logs})")


def _as_float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def same_value(saved: Any, value: str) -> bool:
    """Whether a value in `run_config.json` equals a command-line value (text; numbers compared as numbers)."""
    if str(saved).lower() == value.lower():
        return True
    return isinstance(saved, (int, float)) and not isinstance(saved, bool) and _as_float(value) == float(saved)


@dataclass(frozen=True)
class ConfigRun:
    """A `trainers/run.py` run of `config` with `values` set on its command line, in `<save_root>/<name>`."""

    name: str
    config: str
    values: dict[str, str] = field(default_factory=dict)

    def settings(self, overrides: Sequence[str] = ()) -> dict[str, str]:
        """The command-line values, as text: the shared `overrides` (key=value), then this run's own."""
        out = {k: v for k, v in (item.split("=", 1) for item in overrides)}
        return out | {k: str(v) for k, v in self.values.items()}

    def command(self, save_root: str, overrides: Sequence[str] = ()) -> list[str]:
        cmd = [sys.executable, "trainers/run.py", "--config", str(Path(self.config).resolve())]
        cmd += ["--save_root", str(Path(save_root).resolve()), "--exp_name", self.name, "--report_to", "none"]
        for key, value in self.settings(overrides).items():
            cmd += [f"--{key}", value]
        return cmd

    def check_finished(self, folder: Path, overrides: Sequence[str] = ()) -> None:
        """A finished run is reused only if it was made with this run's values (raises ValueError otherwise)."""
        saved = json.loads((folder / "run_config.json").read_text())
        for key, value in self.settings(overrides).items():
            if not same_value(saved.get(key), value):
                raise ValueError(
                    f"{folder} was trained with {key}={saved.get(key)!r}, not {value}; "
                    "use another --save_root or remove it"
                )
