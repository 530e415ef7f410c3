"""`accelerate launch` with preemption semantics: exit 75 when the run was preempted, signals reach every rank.

    python trainers/launch.py --multi_gpu --num_processes 2 trainers/run.py --config configs/x.json

Everything after `trainers/launch.py` goes to `accelerate launch` unchanged. Why a wrapper: torchrun (which
`accelerate launch --multi_gpu` runs) reports any rank's non-zero exit as its own failure (exit 1, with a
traceback) although every rank checkpointed and exited 75; and it starts the ranks in their own sessions, so a
SIGUSR1 sent to the launcher alone (SLURM `--signal=B:USR1@...`) never reaches them. This wrapper

- forwards SIGTERM / SIGUSR1 to the ranks as SIGUSR1 (checkpoint at the next step, exit 75), not to torchrun's
  agent, which would SIGKILL ranks still writing their checkpoint after its grace period;
- collects each rank's exit status (`runner.main` writes it into the folder named by `HF_EXPERIMENTS_STATUS_DIR`)
  and exits 75 when a rank was preempted and none failed otherwise (74 disk full, 2 bad config likewise);
- dies with its parent: the launcher gets SIGTERM when the wrapper is killed, and each rank when its launcher
  is (`runner.die_with_parent`), so no rank trains on as an orphan.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

STATUS_ENV = "HF_EXPERIMENTS_STATUS_DIR"
PREEMPTED, DISK_FULL, BAD_CONFIG = 75, 74, 2


def write_status(code: int) -> None:
    """Called by each rank as it exits: its exit status, for the wrapper."""
    folder = os.environ.get(STATUS_ENV)
    if not folder:
        return
    rank = os.environ.get("RANK", "0")
    try:
        Path(folder, f"rank-{rank}.json").write_text(json.dumps({"exit": int(code), "pid": os.getpid()}))
    except OSError:
        pass


def rank_statuses(folder: str | os.PathLike) -> dict[str, int]:
    out = {}
    for path in Path(folder).glob("rank-*.json"):
        try:
            out[path.stem] = int(json.loads(path.read_text())["exit"])
        except (OSError, ValueError, KeyError):
            continue
    return out


def exit_code(launcher_code: int, statuses: dict[str, int], n_ranks: int | None = None, forwarded: bool = False) -> int:
    """The wrapper's exit status from the launcher's and the ranks' own: a rank's 75 / 74 / 2 when every rank
    that said something agrees; the launcher's own when a rank died without a word (a crash), unless the wrapper
    had forwarded a preemption signal (a rank still starting dies of it before it can handle it: preempted)."""
    if launcher_code == 0:
        return 0
    codes = set(statuses.values()) - {0}
    if forwarded and codes <= {PREEMPTED}:
        return PREEMPTED
    if n_ranks is not None and len(statuses) < n_ranks:
        return launcher_code
    for meaning in (BAD_CONFIG, DISK_FULL, PREEMPTED):
        if codes == {meaning}:
            return meaning
    return launcher_code


def _set_parent_death_signal() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except OSError:
            pass


def _ranks(launcher_pid: int) -> list[Any]:
    """The rank processes: the launcher's children that torchrun gave a `LOCAL_RANK` (its agent runs inside
    `accelerate launch`; helpers such as the `nvidia-smi` accelerate runs first have none), or, for a
    single-process launch, its Python children."""
    import psutil

    try:
        children = psutil.Process(launcher_pid).children(recursive=False)
    except psutil.Error:
        return []
    ranks, pythons = [], []
    for child in children:
        try:
            if "LOCAL_RANK" in child.environ():
                ranks.append(child)
            elif "python" in child.name().lower():
                pythons.append(child)
        except psutil.Error:
            continue
    return ranks or pythons


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else BAD_CONFIG
    with tempfile.TemporaryDirectory(prefix="hf_experiments-launch-") as status_dir:
        env = {**os.environ, STATUS_ENV: status_dir}
        cmd = [sys.executable, "-m", "accelerate.commands.launch", *argv]
        proc = subprocess.Popen(cmd, env=env, preexec_fn=_set_parent_death_signal)

        forwarded = []

        def forward(signum: int, frame: Any) -> None:
            forwarded.append(signum)
            ranks = _ranks(proc.pid)
            for rank in ranks:
                try:
                    rank.send_signal(signal.SIGUSR1)
                except Exception:  # it may have just exited
                    pass
            if not ranks:  # not started yet (or a single process without children): the launcher itself
                proc.send_signal(signal.SIGTERM)
            print(f"launch: {signal.Signals(signum).name} forwarded to {len(ranks)} rank(s)", file=sys.stderr)

        for sig in (signal.SIGTERM, signal.SIGUSR1):
            signal.signal(sig, forward)
        seen: dict[int, Any] = {}
        most = 0  # ranks alive at once (torchrun restarts start new ones)
        while proc.poll() is None:
            current = _ranks(proc.pid)
            most = max(most, len(current))
            seen.update({r.pid: r for r in current})
            try:
                proc.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                pass
        import psutil

        psutil.wait_procs(list(seen.values()), timeout=600)  # ranks outliving a killed launcher finish first
        code = exit_code(proc.returncode, rank_statuses(status_dir), most or None, bool(forwarded))
        if code == PREEMPTED:
            print("launch: preempted: rerun the same command to resume", file=sys.stderr)
        return code if code >= 0 else 128 - code
