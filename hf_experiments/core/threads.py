"""`torch_threads`: how many intra-op threads a CPU run uses, chosen by measuring.

Small models run hundreds of tiny ops per step, each an OpenMP region that waits for every thread; on a machine
that also runs other work, all cores can be several times slower than one (measured in issue 19: 5.2x blotch, 17x
cmp, 5.7x GRU intervention), while on an idle machine all cores are a little faster. No fixed rule is right on
both, so `auto` times the first training steps with one thread and with all cores, alternating (at least 4 steps
each and 0.2 s in all, at most 16 each), and keeps the faster for the rest of the run (one thread only when it is
at least 10% faster). The choice is printed, stored in the run folder (`torch_threads.json`) and reused when the
run resumes, so a resumed run computes with the same thread count as before (the count changes float reduction
order).

`auto` measures only where the choice is open: one CPU process with more than one core and no `OMP_NUM_THREADS`
set (a user's or a launcher's choice: torchrun sets 1 per rank). An integer sets the count.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from .run_folder import write_json_atomic

RECORD = "torch_threads.json"
PROBE_ROUNDS = 4  # steps per thread count at least; alternated after one warm-up step (first-call costs)
# Short steps are timed at the scheduler's granularity on a busy machine: more rounds until the timed steps add up
# to this many seconds (at most MAX_PROBE_ROUNDS; the mlp's ~3 ms steps needed it, benchmarks/README.md).
MIN_PROBE_SECONDS = 0.2
MAX_PROBE_ROUNDS = 16
# One thread must win by this much: all cores is torch's default and the idle machine's best, and a few early
# steps are noisy; where one thread wins at all (a busy machine) it wins by 2-35x (benchmarks/README.md).
ONE_THREAD_MARGIN = 0.9
DEFAULT_THREADS = torch.get_num_threads()  # torch's own default (the physical cores), before anyone changes it


def probe_plan(rounds: int, cores: int) -> list[tuple[int, bool]]:
    """(thread count, timed) of each probe step: an untimed warm-up with all cores, then 1 and all alternating."""
    return [(cores, False)] + [(n, True) for _ in range(rounds) for n in (1, cores)]


def choose(timings: dict[int, list[float]]) -> int:
    """The thread count with the smallest median step time; one thread only when it is `ONE_THREAD_MARGIN`
    faster than the most threads (torch's default)."""
    most = max(timings)
    best = min(timings, key=lambda n: (statistics.median(timings[n]), -n))
    if best == 1 and statistics.median(timings[1]) > ONE_THREAD_MARGIN * statistics.median(timings[most]):
        return most
    return best


class ThreadChoiceCallback(TrainerCallback):
    """Applies `torch_threads` to the training process (see the module docstring)."""

    def __init__(self, setting: str, run_dir: str | os.PathLike | None) -> None:
        self.setting = str(setting)
        self.record = Path(run_dir) / RECORD if run_dir else None
        self.plan: list[tuple[int, bool]] = []
        self.timings: dict[int, list[float]] = {}
        self._start: float | None = None
        self._current: tuple[int, bool] | None = None

    def _why_not_measured(self, args: Any) -> str | None:
        if self.setting != "auto":
            return "config"
        if os.environ.get("OMP_NUM_THREADS"):
            return "OMP_NUM_THREADS"
        if args.world_size > 1:
            return "several processes"
        if args.device.type != "cpu":
            return f"device {args.device.type}"
        if DEFAULT_THREADS < 2:
            return "one core"
        return None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        why = self._why_not_measured(args)
        if why == "config":
            torch.set_num_threads(int(self.setting))
            self._write({"torch_threads": int(self.setting), "how": "config"}, state)
            return
        if why is not None:
            self._write({"torch_threads": torch.get_num_threads(), "how": why}, state)
            return
        earlier = self._read()
        if earlier.get("how") == "measured":  # a resumed run: the same thread count as before
            torch.set_num_threads(int(earlier["torch_threads"]))
            if state.is_world_process_zero:
                print(
                    f"torch_threads=auto: {earlier['torch_threads']} (measured before, {self.record})", file=sys.stderr
                )
            return
        self.plan = probe_plan(PROBE_ROUNDS, DEFAULT_THREADS)
        self.timings = {}

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.plan:
            self._current = self.plan.pop(0)
            torch.set_num_threads(self._current[0])
            self._start = time.perf_counter()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._start is None:
            return
        seconds = time.perf_counter() - self._start
        self._start = None
        threads, timed = self._current
        if timed:
            self.timings.setdefault(threads, []).append(seconds)
        torch.set_num_threads(DEFAULT_THREADS)  # evaluations between probe steps run as torch would
        if not self.plan:
            rounds = min((len(t) for t in self.timings.values()), default=0)
            spent = sum(sum(t) for t in self.timings.values())
            if rounds < MAX_PROBE_ROUNDS and spent < MIN_PROBE_SECONDS and len(self.timings) == 2:
                self.plan = [(1, True), (DEFAULT_THREADS, True)]  # one more round
            else:
                self._decide(state)

    def _decide(self, state: Any) -> None:
        if len(self.timings) < 2:  # cut short (too few steps): torch's default
            return
        threads = choose(self.timings)
        torch.set_num_threads(threads)
        medians = {n: statistics.median(t) for n, t in self.timings.items()}
        record = {
            "torch_threads": threads,
            "how": "measured",
            "cores": DEFAULT_THREADS,
            "median_step_seconds": medians,
            "step_seconds": self.timings,
        }
        self._write(record, state)
        if state.is_world_process_zero:
            shown = ", ".join(f"{n} thread{'s' * (n > 1)} {s:.3f} s/step" for n, s in sorted(medians.items()))
            print(f"torch_threads=auto: {shown}: using {threads} (stored in {self.record})", file=sys.stderr)

    def _read(self) -> dict[str, Any]:
        try:
            return json.loads(self.record.read_text(encoding="utf-8")) if self.record else {}
        except (OSError, ValueError):
            return {}

    def _write(self, record: dict[str, Any], state: Any) -> None:
        if self.record is not None and state.is_world_process_zero and self.record.parent.is_dir():
            write_json_atomic(self.record, {**record, "from_step": state.global_step})
