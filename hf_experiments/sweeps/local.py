"""The local runner: jobs in this process one after another (tiny jobs pay Python's start-up once),
or one subprocess per device at a time when several devices are named.
"""

from __future__ import annotations

import gc
import os
import queue
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from tqdm.auto import tqdm

from hf_experiments.core.progress import progress_bar
from hf_experiments.core.runner import PREEMPTED_EXIT_CODE
from hf_experiments.core.runner import main as run_main

from .plan import Job

# The folder holding the `hf_experiments` package (a source checkout or site-packages): job subprocesses import
# this very copy of it.
PACKAGE_ROOT = Path(__file__).resolve().parents[2]


def run_in_process(job: Job) -> int:
    """Run one job inside this process (no interpreter start-up); returns its exit status."""
    import torch

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


def run_job_subprocess(
    config_path: str, cwd: str | None = None, device: str | None = None, log_path: str | None = None
) -> int:
    """``python -m hf_experiments --config <config_path>`` in `cwd`; returns its exit status.

    `device`: ``None`` leaves ``CUDA_VISIBLE_DEVICES`` as the scheduler set it, ``"cpu"`` hides every GPU,
    anything else becomes ``CUDA_VISIBLE_DEVICES``. Output goes to `log_path` (appended) when given.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = str(PACKAGE_ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    if device is not None:
        env["CUDA_VISIBLE_DEVICES"] = "" if device == "cpu" else str(device)
    cmd = [sys.executable, "-m", "hf_experiments", "--config", str(config_path)]
    if log_path is None:
        return subprocess.run(cmd, cwd=cwd, env=env, check=False).returncode
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a", encoding="utf-8") as log:
        return subprocess.run(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, check=False).returncode


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
    entry, each starting one run subprocess at a time with that device (``"cpu"`` hides the
    GPUs; name a device twice to run two jobs on it). Returns {job name: exit status}."""
    devices = list(default_devices() if devices is None else devices)
    codes: dict[str, int] = {}
    with sweep_bar(jobs) as bar:
        if len(devices) <= 1:
            start = time.monotonic()
            for k, job in enumerate(jobs):
                _say(bar, f"[sweep] job {job.index}: {job.name} ({_progress(k, len(jobs), start)})")
                if devices and devices[0] != "cpu":
                    log = _log_path(log_dir, job)
                    codes[job.name] = run_job_subprocess(str(job.config_path), cwd, devices[0], log)
                else:
                    codes[job.name] = run_in_process(job)
                bar.update(1)
                if codes[job.name] == PREEMPTED_EXIT_CODE:  # preempted: stop here; rerunning the sweep goes on
                    break
            return codes
        _run_on_devices(jobs, devices, log_dir, cwd, codes, bar)
    return codes


def sweep_bar(jobs: Sequence[Job]) -> tqdm:
    """The sweep's bar: jobs done / total, elapsed and ETA (off as `core.progress` says, or when a job's config
    sets ``disable_tqdm``)."""
    off = any(bool(job.config.get("disable_tqdm")) for job in jobs)
    return progress_bar(desc="sweep jobs", total=len(jobs), unit="job", disable=off)


def _say(bar: tqdm, text: str) -> None:
    """A log line above the bar (printed as it is when the bar is off), flushed so logs keep their order."""
    bar.write(text)
    sys.stdout.flush()


def _run_on_devices(
    jobs: Sequence[Job], devices: Sequence[str], log_dir: Path | None, cwd: str | None, codes: dict[str, int], bar
) -> None:
    """A worker thread per device entry, each running one job subprocess at a time (see :func:`run_local`)."""
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
            _say(bar, f"[sweep] job {job.index}: {job.name} on device {device}")
            code = run_job_subprocess(str(job.config_path), cwd, device, _log_path(log_dir, job))
            with lock:
                codes[job.name] = code
                bar.update(1)

    threads = [threading.Thread(target=worker, args=(d,), daemon=True) for d in devices]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _progress(done: int, total: int, start: float) -> str:
    """``3/36 run, 0:41 elapsed, ETA 7:12`` (the ETA from the mean time of the jobs run so far)."""
    elapsed = time.monotonic() - start
    eta = f", ETA {_clock(elapsed / done * (total - done))}" if done else ""
    return f"{done}/{total} run, {_clock(elapsed)} elapsed{eta}"


def _clock(seconds: float) -> str:
    minutes, sec = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{sec:02d}" if minutes >= 60 else f"{minutes}:{sec:02d}"


def _log_path(log_dir: Path | None, job: Job) -> str | None:
    return str(log_dir / f"{job.name}.log") if log_dir is not None else None
