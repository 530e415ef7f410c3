"""One manipulation round across ranks: the rows it works on, split `rank::world`, run
under a seeded forked RNG, gathered in row order so every rank applies the same update (checked by hash), then
logged and written to `manipulations/round_<k>_<kind>.csv`.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate.utils import gather_object
from transformers import TrainerCallback

from hf_experiments.core.plots import write_csv
from hf_experiments.core.progress import progress_bar

from .data_cache import DataCache, solution_length
from .schedule import ManipulationSchedule

KINDS = ("star", "aug", "axe", "internalize")


# --------------------------------------------------------------------------------------------
# Shared context, split and gather
# --------------------------------------------------------------------------------------------
@dataclass
class CacheContext:
    """What every cache callback needs: the cache, the trainer (model, args, log) and generation settings."""

    cache: DataCache
    trainer: Any
    tokenizer: Any
    run_dir: Path
    blotch_p: float | None = None
    batch_size: int = 256  # rows one loop tries, and the generation batch
    max_positions: int = 512
    t_train_start: float = field(default_factory=time.time)
    manip_seconds: float = 0.0  # this process's time in rounds (the time share is per process)

    @property
    def args(self) -> Any:
        return self.trainer.args

    @property
    def model(self) -> Any:
        return self.trainer.model  # unwrapped: generation needs no DDP hooks

    def rng(self, *key: int) -> np.random.Generator:
        return np.random.default_rng([int(self.args.seed), *key])


@dataclass
class Merged:
    """The gathered result of one round over rows ``0..n-1`` of the round's selection."""

    solutions: list[str | None]
    tried: int
    kept: int
    answer_acc: float
    stats: dict[str, float]


def run_sharded(
    n: int, fn: Callable[..., Any], ctx: CacheContext, seed_key: Sequence[int], desc: str = "cache round"
) -> Merged:
    """Run ``fn(local_indices, progress=bar) -> ManipulationResult`` on this rank's share ``[rank::world]`` of
    ``n`` rows under a forked, seeded RNG, and gather everything onto every rank. ``bar`` is a progress bar
    named ``desc`` over this rank's rows (drawn on the main rank only; ``fn`` advances it as rows finish)."""
    rank, world = ctx.args.process_index, ctx.args.world_size
    local = np.arange(n)[rank::world]
    device = ctx.args.device
    devices = [device] if device.type == "cuda" else []
    if len(local):
        with (
            torch.random.fork_rng(devices=devices),
            progress_bar(desc=desc, total=len(local), unit="row", args=ctx.args, leave=False) as bar,
        ):
            torch.manual_seed(int(ctx.rng(*seed_key, rank).integers(2**62)))
            res = fn(local, progress=bar)
        part = (
            local.tolist(),
            list(res.solutions),
            int(res.tried),
            float(res.answer_acc) * int(res.tried),
            dict(res.stats),
            len(local),
        )
    else:
        part = ([], [], 0, 0.0, {}, 0)
    parts = gather_object([part]) if world > 1 else [part]
    solutions: list[str | None] = [None] * n
    tried, correct, stats = 0, 0.0, {}
    for idx, sols, t, c, st, m in parts:
        for i, s in zip(idx, sols):
            solutions[i] = s
        tried += t
        correct += c
        for k, v in st.items():  # rank means weighted by rows
            stats[k] = stats.get(k, 0.0) + float(v) * m / max(n, 1)
    kept = sum(s is not None for s in solutions)
    return Merged(solutions, tried, kept, correct / tried if tried else 0.0, stats)


def cache_digest(cache: DataCache) -> str:
    """A hash of every row (problem, solution, origin, round)."""
    h = hashlib.sha256()
    for row in zip(cache.problems, cache.solutions, cache.origin, cache.round):
        h.update(repr(row).encode())
    return h.hexdigest()


def check_same_cache(cache: DataCache) -> None:
    """Every rank must end a round with the same cache; a mismatch would silently train ranks on different
    data, so it stops the run."""
    digests = gather_object([cache_digest(cache)])
    if len(set(digests)) > 1:
        raise RuntimeError(f"ranks hold different data caches after a manipulation round: {digests}")


def select_rows(n_rows: int, loops: int, batch: int, rng: np.random.Generator) -> np.ndarray:
    """Rows a round works on: all (``loops == -1``) or ``loops * batch`` distinct ones, uniformly, sorted."""
    if loops == -1 or loops * batch >= n_rows:
        return np.arange(n_rows)
    return np.sort(rng.choice(n_rows, size=loops * batch, replace=False))


def write_round_table(path: Path, rows: list[dict[str, Any]]) -> None:
    """The rows one round kept, before and after (``manipulations/round_<k>_<kind>.csv``)."""
    write_csv(path, rows, ["problem", "old_solution", "solution", "old_len", "new_len"])


# --------------------------------------------------------------------------------------------
# The manipulations
# --------------------------------------------------------------------------------------------
class CacheManipulation(TrainerCallback):
    """Base: at the start of an epoch the schedule picks, run :meth:`apply` and log, time and record it."""

    kind: str = ""

    def __init__(self, ctx: CacheContext, schedule: ManipulationSchedule) -> None:
        self.ctx, self.schedule = ctx, schedule

    def on_train_begin(self, args, state, control, **kwargs):
        self.ctx.t_train_start = time.time()
        return control

    def apply(self, round_: int, state: Any) -> tuple[Merged, list[dict[str, Any]], dict[str, float]]:
        """Mutate the cache; returns the merged result, the kept rows' table and extra logs."""
        raise NotImplementedError

    def on_epoch_begin(self, args, state, control, **kwargs):
        if not self.schedule.due(state):
            return control
        ctx, cache = self.ctx, self.ctx.cache
        round_ = self.schedule.round_index(state)
        t0 = time.time()
        merged, table, extra = self.apply(round_, state)
        seconds = time.time() - t0
        if args.world_size > 1:
            check_same_cache(cache)
        led = cache.ledger
        led.manip_seconds += seconds
        ctx.manip_seconds += seconds
        led.rounds.append(
            {
                "round": round_,
                "epoch": self.schedule.epochs_done(state),
                "kind": self.kind,
                "step": state.global_step,
                "tried": merged.tried,
                "kept": merged.kept,
                "answer_acc": merged.answer_acc,
                "seconds": seconds,
                **extra,
            }
        )
        if args.should_save:
            write_round_table(ctx.run_dir / "manipulations" / f"round_{round_}_{self.kind}.csv", table)
        logs = {
            f"{self.kind}/tried": merged.tried,
            f"{self.kind}/kept": merged.kept,
            f"{self.kind}/answer_acc": merged.answer_acc,
            f"{self.kind}/seconds": seconds,
            **{f"{self.kind}/{k}": v for k, v in {**merged.stats, **extra}.items()},
            "cache/rows": len(cache),
            "cache/mean_solution_length": cache.mean_solution_length(),
            "cache/manip_time_share": ctx.manip_seconds / max(time.time() - ctx.t_train_start, 1e-9),
        }
        ctx.trainer.log(logs)
        return control

    def _table(self, problems: Sequence[str], old: Sequence[str | None], new: Sequence[str]) -> list[dict]:
        return [
            {
                "problem": p,
                "old_solution": o or "",
                "solution": s,
                "old_len": solution_length(o) if o else "",
                "new_len": solution_length(s),
            }
            for p, o, s in zip(problems, old, new)
        ]


def _max_new_tokens(ctx: CacheContext, problems: Sequence[str], longest: int) -> int:
    """Generation budget: a kept solution is never longer than ``longest`` tokens (EOS included)."""
    prompt = max((len(p) for p in problems), default=0) + 3  # [btoken] BOS problem =
    return max(1, min(longest, ctx.max_positions - prompt))


@dataclass
class _Result:
    solutions: list
    tried: int
    answer_acc: float
    stats: dict
