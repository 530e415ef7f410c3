"""One process (one launch) per run folder: an exclusive `filelock` next to the folder.

The lock file is `<save_root>/.<exp_name>.lock` (beside the run folder, so `fresh_start` can move the folder while
holding it); `.<exp_name>.lock.holder` says who holds it. The lock is an OS file lock (`flock`): the kernel
releases it when the holder dies, however it dies, so it cannot go stale; a stale holder file is only
overwritten. (On a filesystem without `flock` filelock falls back to a lock file whose existence is the lock:
one left by a killed process must then be deleted by hand.) Only the main process of a launch takes it.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from filelock import FileLock, Timeout


class RunFolderBusy(RuntimeError):
    """Another process holds the run folder."""


class RunLock:
    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.run_dir = run_dir = Path(run_dir)
        self.path = run_dir.with_name(f".{run_dir.name}.lock")
        self.holder_path = self.path.with_name(self.path.name + ".holder")
        self._lock = FileLock(str(self.path), timeout=0)

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire()
        except Timeout:
            raise RunFolderBusy(f"{self.run_dir} is in use by {self.holder()}") from None
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        self.holder_path.write_text(json.dumps(holder), encoding="utf-8")

    def holder(self) -> str:
        try:
            h = json.loads(self.holder_path.read_text(encoding="utf-8"))
            return f"pid {h['pid']} on host {h['host']} (since {h['since']})"
        except (OSError, ValueError, KeyError):
            return "another process (holder unknown)"

    def release(self) -> None:
        if self._lock.is_locked:
            self.holder_path.unlink(missing_ok=True)
            self._lock.release()

    @property
    def is_locked(self) -> bool:
        return self._lock.is_locked
