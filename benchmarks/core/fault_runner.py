"""`trainers/run.py` with one fault planted: used by `fault_injection.py` as the training script.

`HF_FAULT=<phase>` (and `HF_FAULT_RANK`, default 0; `HF_FAULT_NTH`, default 2: the n-th time the phase is reached)
makes this process SIGKILL itself (or, for `*-sigterm` phases, raise SIGTERM) at that moment of a run; the
phases are the steps of the checkpoint sequence, the data cache's rounds and the end of a run. Nothing here
changes what a run computes: each fault wraps a function and calls the original first or not at all.
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

_count = {"n": 0}


def _die(sig: int = signal.SIGKILL) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), sig)


def _wrap(owner: Any, name: str, when: str, sig: int, test: Callable[..., bool] | None = None) -> None:
    """Replace `owner.name` by a wrapper that dies `before` or `after` the n-th call passing `test`."""
    original = getattr(owner, name)
    nth = int(os.environ.get("HF_FAULT_NTH", "2"))

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        hit = test is None or test(*args, **kwargs)
        if hit:
            _count["n"] += 1
        fire = hit and _count["n"] == nth
        if fire and when == "before":
            _die(sig)
        out = original(*args, **kwargs)
        if fire and when == "after":
            _die(sig)
        return out

    setattr(owner, name, wrapper)


def plant(phase: str) -> None:
    import transformers

    from hf_experiments.core import run_folder, runner, signals, trainer_internals

    trainer = transformers.Trainer
    kill, term = signal.SIGKILL, signal.SIGTERM
    # (owner, attribute, before/after, signal, which calls count); n-th = the 2nd checkpoint by default
    phases: dict[str, tuple] = {
        "save:start": (trainer_internals, "unmark", "before", kill, None),
        "save:unmarked": (trainer_internals, "unmark", "after", kill, None),
        "save:before-trainer-files": (trainer, "_save_checkpoint", "before", kill, None),
        "save:model-written": (trainer, "_save_optimizer_and_scheduler", "before", kill, None),
        "save:optimizer-written": (trainer, "_save_rng_state", "before", kill, None),
        "save:trainer-files-written": (trainer_internals, "write_json_atomic", "before", kill, None),
        "save:window-written": (trainer_internals, "complete_checkpoint", "before", kill, None),
        "complete:before-marker": (run_folder, "file_records", "before", kill, None),
        "complete:marker-written": (run_folder, "rotate_checkpoints", "before", kill, None),
        "rotate:doomed-unmarked": (run_folder, "unmark", "after", kill, None),
        "end:after-training": (signals, "any_rank_received", "before", kill, None),
        "end:before-final-save": (runner, "finish", "before", kill, None),
        "end:model-saved": (runner, "write_model_card", "before", kill, None),
        "end:metrics-written": (
            runner,
            "write_json_atomic",
            "before",
            kill,
            lambda path, obj: Path(path).name == runner.FINISHED_RECORD,
        ),
        "end:finished": (
            runner,
            "write_json_atomic",
            "after",
            kill,
            lambda path, obj: Path(path).name == runner.FINISHED_RECORD,
        ),
        "end:sigterm-before-eval": (signals, "any_rank_received", "before", term, None),
        "end:sigterm-during-save": (runner, "write_model_card", "before", term, None),
    }
    if phase.startswith("cache:"):
        from hf_experiments.blotch.self_training import callbacks, data_cache

        phases.update(
            {
                "cache:mid-axe-round": (callbacks.AxeCallback, "apply", "before", kill, None),
                "cache:mid-internalize-round": (callbacks.InternalizeCallback, "apply", "before", kill, None),
                "cache:rows-saved": (data_cache.DataCache, "save", "after", kill, None),
            }
        )
    if phase not in phases:
        raise SystemExit(f"unknown fault phase {phase!r}; one of {sorted(phases)}")
    owner, name, when, sig, test = phases[phase]
    if phase.startswith(("end:", "cache:")):
        os.environ.setdefault("HF_FAULT_NTH", "1")
    _wrap(owner, name, when, sig, test)


if __name__ == "__main__":
    phase = os.environ.get("HF_FAULT")
    if phase and os.environ.get("RANK", "0") == os.environ.get("HF_FAULT_RANK", "0"):
        plant(phase)
    sys.argv = [str(ROOT / "trainers" / "run.py"), *sys.argv[1:]]
    runpy.run_path(sys.argv[0], run_name="__main__")
