"""Callbacks that rewrite the training-data cache between epochs (SPEC §1): STaR bootstrapping,
augmentation, axing, the stepwise-internalization baseline, the schedule that says when, and a per-epoch
history of solution length and validation accuracy.

**When** (:class:`ManipulationSchedule`): rounds run at the start of an epoch, after ``c`` epochs have been
trained, with ``c >= max(1, pre_epochs)``:

- ``aug_mod > 0``: the first round at ``c = max(1, pre_epochs)``, then every ``aug_mod`` epochs;
- ``aug_mod < 0``: when the training loss has plateaued (:func:`plateaued`) over the epochs since the last
  round (or since the start), and at least ``min_aug_gap`` epochs after the last round;
- ``aug_mod == 0``: never;
- and never after ``last_aug_epoch`` trained epochs (when set), so that the last epochs train on data that no
  longer changes (a cache rewritten up to the end leaves the model no time to fit its final form).

The plateau detector is the ``ReduceLROnPlateau`` rule on epoch-mean training losses: a plateau is
``patience`` consecutive epochs none of which improved on the best earlier epoch by more than ``rel_tol``
(relative). Only epochs since the last round count, because a round changes the data and with it the loss
level (a just-shortened cache has a different loss; comparing across it would be meaningless). Epoch
means come from the Trainer's logged ``loss`` entries (averaged over all ranks by the Trainer and saved in
every checkpoint), so every rank takes the same decision and a resumed run takes the same one again; they
need ``logging_strategy="steps"`` with several logs per epoch.

**Which order**: several manipulations in one run act in the order their callbacks were added (the blotch
experiment adds STaR, augmentation, axing, internalization), each on the cache the previous one left.

**Ranks**: all ranks hold the same cache. A round's rows (chosen with an RNG seeded by ``(seed, round)``, the
same on every rank) are split ``rows[rank::world_size]``; each rank runs the manipulation on its share
(sampling seeded by ``(seed, round, kind, rank)``, inside ``torch.random.fork_rng`` so training's RNG stream
is untouched), and ``accelerate.utils.gather_object`` hands every rank every result, merged in row order:
every rank applies the same update. Generation itself (batched, KV cache, on the device) is in
:mod:`hf_experiments.manipulations`.

**Logs** (``Trainer.log``, so TensorBoard gets them): ``<kind>/tried``, ``<kind>/kept``,
``<kind>/answer_acc`` and the function's own stats, ``cache/rows``, ``cache/mean_solution_length``,
``cache/manip_time_share`` (seconds manipulating / seconds since training began, this process). Each round
writes its kept rows to ``<run>/manipulations/round_<k>_<kind>.csv`` (main process).
"""

from __future__ import annotations

import csv
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

from .data.arithmetic import ProblemParams, distinct_problems, problem_space_size
from .data_cache import DataCache, solution_length

KINDS = ("star", "aug", "axe", "internalize")


# --------------------------------------------------------------------------------------------
# Scheduling
# --------------------------------------------------------------------------------------------
def plateaued(losses: Sequence[float], patience: int, rel_tol: float) -> bool:
    """True when none of the last ``patience`` losses beat the best earlier one by more than ``rel_tol``
    (relative): ``min(last) > (1 - rel_tol) * min(earlier)``. Needs ``patience + 1`` losses."""
    if patience < 1:
        raise ValueError(f"patience={patience} is not allowed; use an integer >= 1")
    if not 0 <= rel_tol < 1:
        raise ValueError(f"rel_tol={rel_tol} is not allowed; use a value in [0, 1)")
    if len(losses) < patience + 1:
        return False
    best_before = min(losses[:-patience])
    return min(losses[-patience:]) > (1.0 - rel_tol) * best_before


def epoch_mean_losses(log_history: Sequence[dict], epoch_starts: Sequence[int],
                      epoch_updates: Sequence[int]) -> list[float | None]:
    """Mean logged training ``loss`` of each epoch (entries whose step lies in the epoch; None: no log)."""
    steps = np.array([h["step"] for h in log_history if "loss" in h], dtype=np.int64)
    values = np.array([h["loss"] for h in log_history if "loss" in h], dtype=np.float64)
    out: list[float | None] = []
    for start, n in zip(epoch_starts, epoch_updates):
        inside = (steps > start) & (steps <= start + n)
        out.append(float(values[inside].mean()) if inside.any() else None)
    return out


@dataclass
class ManipulationSchedule(TrainerCallback):
    """Decides, at the start of every epoch, whether a manipulation round runs (module docstring)."""

    cache: DataCache
    pre_epochs: int = 0
    aug_mod: int = 1
    min_aug_gap: int = 1
    patience: int = 2
    rel_tol: float = 0.01
    last_aug_epoch: int | None = None
    _memo: dict[int, bool] = field(default_factory=dict, repr=False)

    def epochs_done(self, state: Any) -> int | None:
        """Epochs trained so far when a fresh epoch is about to start; None inside an epoch (a resume into
        a half-done epoch calls ``on_epoch_begin`` again: no round then)."""
        led = self.cache.ledger
        if not led.epoch_starts:
            return 0
        if state.global_step < led.epoch_starts[-1] + led.epoch_updates[-1]:
            return None
        return len(led.epoch_starts)

    def due_at(self, c: int, losses: Sequence[float | None]) -> bool:
        """The rule for "a round after ``c`` trained epochs", given the epoch-mean losses so far."""
        first = max(1, self.pre_epochs)
        if self.aug_mod == 0 or c < first or (self.last_aug_epoch is not None and c > self.last_aug_epoch):
            return False
        if self.aug_mod > 0:
            return (c - first) % self.aug_mod == 0
        done = [e for e in self.cache.ledger.round_epochs() if e < c]
        last = done[-1] if done else 0
        if done and c - last < self.min_aug_gap:
            return False
        since = [x for x in losses[last:c] if x is not None]
        return plateaued(since, self.patience, self.rel_tol)

    def due(self, state: Any) -> bool:
        c = self.epochs_done(state)
        if c is None:
            return False
        if c not in self._memo:  # every manipulation asks; the answer must not change within the epoch start
            led = self.cache.ledger
            losses = epoch_mean_losses(state.log_history, led.epoch_starts, led.epoch_updates)
            self._memo = {c: self.due_at(c, losses)}
        return self._memo[c]

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.due(state)  # registered before the manipulations: decides once, they read the memo
        return control

    def round_index(self, state: Any) -> int:
        """0 for the first round, 1 for the second, ... (several kinds in one round share it)."""
        c = self.epochs_done(state)
        return len([e for e in self.cache.ledger.round_epochs() if e != c])


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


def run_sharded(n: int, fn: Callable[[np.ndarray], Any], ctx: CacheContext, seed_key: Sequence[int]) -> Merged:
    """Run ``fn(local_indices) -> ManipulationResult`` on this rank's share ``[rank::world]`` of ``n`` rows
    under a forked, seeded RNG, and gather everything onto every rank."""
    rank, world = ctx.args.process_index, ctx.args.world_size
    local = np.arange(n)[rank::world]
    device = ctx.args.device
    devices = [device] if device.type == "cuda" else []
    if len(local):
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(int(ctx.rng(*seed_key, rank).integers(2**62)))
            res = fn(local)
        part = (local.tolist(), list(res.solutions), int(res.tried), float(res.answer_acc) * int(res.tried),
                dict(res.stats), len(local))
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
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = ["problem", "old_solution", "solution", "old_len", "new_len"]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


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
        led.rounds.append({"round": round_, "epoch": self.schedule.epochs_done(state), "kind": self.kind,
                           "step": state.global_step, "tried": merged.tried, "kept": merged.kept,
                           "answer_acc": merged.answer_acc, "seconds": seconds, **extra})
        if args.should_save:
            write_round_table(ctx.run_dir / "manipulations" / f"round_{round_}_{self.kind}.csv", table)
        logs = {f"{self.kind}/tried": merged.tried, f"{self.kind}/kept": merged.kept,
                f"{self.kind}/answer_acc": merged.answer_acc, f"{self.kind}/seconds": seconds,
                **{f"{self.kind}/{k}": v for k, v in {**merged.stats, **extra}.items()},
                "cache/rows": len(cache), "cache/mean_solution_length": cache.mean_solution_length(),
                "cache/manip_time_share": ctx.manip_seconds / max(time.time() - ctx.t_train_start, 1e-9)}
        ctx.trainer.log(logs)
        return control

    def _table(self, problems: Sequence[str], old: Sequence[str | None], new: Sequence[str]) -> list[dict]:
        return [{"problem": p, "old_solution": o or "", "solution": s,
                 "old_len": solution_length(o) if o else "", "new_len": solution_length(s)}
                for p, o, s in zip(problems, old, new)]


def _max_new_tokens(ctx: CacheContext, problems: Sequence[str], longest: int) -> int:
    """Generation budget: a kept solution is never longer than ``longest`` tokens (EOS included)."""
    prompt = max((len(p) for p in problems), default=0) + 3  # [btoken] BOS problem =
    return max(1, min(longest, ctx.max_positions - prompt))


class StarCallback(CacheManipulation):
    """STaR: solve ``loops * batch`` new problems (never in train/val/cache) at ``temperature``; add the
    correct solutions that are shorter than the ground truth, as new rows (``origin="star"``).

    New problems come from ``params`` excluding ``exclude`` (the dataset's train and validation problems)
    and every problem in the cache. When fewer new problems remain than asked for (a small space), the
    round tries what is left; when none remain it tries nothing (logged ``star/tried = 0``).
    """

    kind = "star"

    def __init__(self, ctx: CacheContext, schedule: ManipulationSchedule, params: ProblemParams,
                 exclude: set[str], loops: int, temperature: float, rationalize: bool = False,
                 star_fn: Callable | None = None) -> None:
        super().__init__(ctx, schedule)
        self.params, self.exclude, self.loops = params, exclude, loops
        self.temperature, self.rationalize = temperature, rationalize
        self.star_fn = star_fn

    def new_problems(self, n: int, round_: int) -> list[str]:
        exclude = self.exclude | set(self.ctx.cache.problems)
        size = problem_space_size(self.params)
        if size is not None:
            n = min(n, size - len(exclude))
        if n <= 0:
            return []
        try:
            return list(distinct_problems(n, self.params, self.ctx.rng(round_, 1), exclude))
        except ValueError:  # parenthetical spaces are not enumerated: none left to draw
            return []

    def apply(self, round_, state):
        from . import manipulations

        ctx = self.ctx
        fn = self.star_fn or manipulations.star
        problems = self.new_problems(self.loops * ctx.batch_size, round_)
        from .data.arithmetic import solve

        longest = max((solution_length("=".join(s for s, _ in solve(p))) for p in problems), default=1)
        budget = _max_new_tokens(ctx, problems, longest)

        def run(local: np.ndarray):
            return fn(ctx.model, ctx.tokenizer, [problems[i] for i in local], temperature=self.temperature,
                      blotch_p=ctx.blotch_p, batch_size=ctx.batch_size, max_new_tokens=budget,
                      rationalize=self.rationalize)

        merged = run_sharded(len(problems), run, ctx, (round_, 1))
        keep = [i for i, s in enumerate(merged.solutions) if s is not None]
        counts = ctx.cache.add([problems[i] for i in keep], [merged.solutions[i] for i in keep], "star", round_)
        table = self._table([problems[i] for i in keep], [None] * len(keep), [merged.solutions[i] for i in keep])
        return merged, table, counts


class AugmentCallback(CacheManipulation):
    """Augmentation: re-solve ``loops * batch`` cached rows (all with -1) at ``temperature``; keep correct,
    strictly shorter solutions, replacing the row (``in_place``) or as new rows (``origin="aug"``)."""

    kind = "aug"

    def __init__(self, ctx: CacheContext, schedule: ManipulationSchedule, loops: int, temperature: float,
                 in_place: bool = True, augment_fn: Callable | None = None) -> None:
        super().__init__(ctx, schedule)
        self.loops, self.temperature, self.in_place, self.augment_fn = loops, temperature, in_place, augment_fn

    def apply(self, round_, state):
        from . import manipulations

        ctx, cache = self.ctx, self.ctx.cache
        fn = self.augment_fn or manipulations.augment
        rows = select_rows(len(cache), self.loops, ctx.batch_size, ctx.rng(round_, 2))
        problems = [cache.problems[i] for i in rows]
        solutions = [cache.solutions[i] for i in rows]
        budget = _max_new_tokens(ctx, problems, max((solution_length(s) for s in solutions), default=1))

        def run(local: np.ndarray):
            return fn(ctx.model, ctx.tokenizer, [problems[i] for i in local], [solutions[i] for i in local],
                      temperature=self.temperature, blotch_p=ctx.blotch_p, batch_size=ctx.batch_size,
                      max_new_tokens=budget)

        merged = run_sharded(len(rows), run, ctx, (round_, 2))
        keep = [i for i, s in enumerate(merged.solutions) if s is not None]
        new = [merged.solutions[i] for i in keep]
        table = self._table([problems[i] for i in keep], [solutions[i] for i in keep], new)
        if self.in_place:
            cache.replace([int(rows[i]) for i in keep], new, "aug", round_)
            counts = {"replaced": len(keep)}
        else:
            counts = cache.add([problems[i] for i in keep], new, "aug", round_)
        return merged, table, counts


class AxeCallback(CacheManipulation):
    """Axing: for ``loops * batch`` cached rows (all with -1) the model solves, remove the single step whose
    removal costs least (``manipulations.axe``), when within tolerance; in place and permanent."""

    kind = "axe"

    def __init__(self, ctx: CacheContext, schedule: ManipulationSchedule, loops: int, tol: float,
                 abs_tol: bool, comp_steps: int, axe_fn: Callable | None = None) -> None:
        super().__init__(ctx, schedule)
        self.loops, self.tol, self.abs_tol, self.comp_steps, self.axe_fn = loops, tol, abs_tol, comp_steps, axe_fn

    def apply(self, round_, state):
        from . import manipulations

        ctx, cache = self.ctx, self.ctx.cache
        fn = self.axe_fn or manipulations.axe
        rows = select_rows(len(cache), self.loops, ctx.batch_size, ctx.rng(round_, 3))
        problems = [cache.problems[i] for i in rows]
        solutions = [cache.solutions[i] for i in rows]
        budget = _max_new_tokens(ctx, problems, max((solution_length(s) for s in solutions), default=1))

        def run(local: np.ndarray):
            return fn(ctx.model, ctx.tokenizer, [problems[i] for i in local], [solutions[i] for i in local],
                      tol=self.tol, abs_tol=self.abs_tol, comp_steps=self.comp_steps, blotch_p=ctx.blotch_p,
                      batch_size=ctx.batch_size, max_new_tokens=budget)

        merged = run_sharded(len(rows), run, ctx, (round_, 3))
        keep = [i for i, s in enumerate(merged.solutions) if s is not None]
        new = [merged.solutions[i] for i in keep]
        table = self._table([problems[i] for i in keep], [solutions[i] for i in keep], new)
        cache.replace([int(rows[i]) for i in keep], new, "axe", round_)
        return merged, table, {"replaced": len(keep)}


class InternalizeCallback(CacheManipulation):
    """Stepwise internalization baseline ("Learning to Internalize CoT Step by Step"): every round removes
    ``k`` more leading intermediate steps from every row (never the answer). No model involved: every rank
    computes the same result itself."""

    kind = "internalize"

    def __init__(self, ctx: CacheContext, schedule: ManipulationSchedule, k: int,
                 internalize_fn: Callable | None = None) -> None:
        super().__init__(ctx, schedule)
        if k < 1:
            raise ValueError(f"k={k} is not allowed; use an integer >= 1")
        self.k, self.internalize_fn = k, internalize_fn

    def apply(self, round_, state):
        from . import manipulations

        cache = self.ctx.cache
        fn = self.internalize_fn or manipulations.internalize
        old = list(cache.solutions)
        new = fn(old, self.k)
        changed = [i for i, (o, s) in enumerate(zip(old, new)) if o != s]
        cache.replace(changed, [new[i] for i in changed], "internalize", round_)
        changed_set = set(changed)
        merged = Merged([new[i] if i in changed_set else None for i in range(len(old))], len(old),
                        len(changed), float("nan"), {})
        table = self._table([cache.problems[i] for i in changed], [old[i] for i in changed],
                            [new[i] for i in changed])
        return merged, table, {"replaced": len(changed)}


# --------------------------------------------------------------------------------------------
# History: solution length and validation accuracy over epochs
# --------------------------------------------------------------------------------------------
class CacheHistoryCallback(TrainerCallback):
    """At the start of every epoch (after that epoch's manipulations), record the cache's mean solution
    length and the model's greedy answer accuracy on ``problems`` (validation; split across ranks)."""

    def __init__(self, ctx: CacheContext, schedule: ManipulationSchedule, problems: Sequence[str],
                 answers: Sequence[int]) -> None:
        self.ctx, self.schedule = ctx, schedule
        self.problems, self.answers = list(problems), list(answers)

    def answer_acc(self) -> float | None:
        if not self.problems:
            return None
        from .blotch_eval import final_answer, generate_solutions

        ctx = self.ctx
        budget = _max_new_tokens(ctx, self.problems, ctx.max_positions)

        def run(local: np.ndarray):
            rolls = generate_solutions(ctx.model, ctx.tokenizer, [self.problems[i] for i in local],
                                       ctx.blotch_p, 0.0, 1, ctx.batch_size, budget)
            hits = [final_answer(t[0]) == self.answers[i] for t, i in zip(rolls.texts, local)]
            return _Result([None] * len(local), len(local), float(np.mean(hits)), {})

        return run_sharded(len(self.problems), run, ctx, (0, 9)).answer_acc

    def record(self, state: Any, epoch: int) -> dict[str, Any]:
        cache = self.ctx.cache
        row = {"epoch": epoch, "step": state.global_step, "rows": len(cache),
               "mean_solution_length": cache.mean_solution_length(), "val_answer_acc": self.answer_acc()}
        cache.ledger.history.append(row)
        self.ctx.trainer.log({"cache/history_mean_solution_length": row["mean_solution_length"],
                              **({"cache/val_answer_acc": row["val_answer_acc"]}
                                 if row["val_answer_acc"] is not None else {})})
        return row

    def on_epoch_begin(self, args, state, control, **kwargs):
        c = self.schedule.epochs_done(state)
        if c is not None and all(h["epoch"] != c for h in self.ctx.cache.ledger.history):
            self.record(state, c)
        return control


@dataclass
class _Result:
    solutions: list
    tried: int
    answer_acc: float
    stats: dict


def write_history(history: Sequence[dict[str, Any]], csv_path: Path, png_path: Path | None = None,
                  title: str = "") -> None:
    """``cache_history.csv`` and a plot of mean training-solution length and validation accuracy."""
    if not history:
        return
    with open(csv_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
    if png_path is None:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, ax_len = plt.subplots(figsize=(6, 3.5))
    ax_len.plot(epochs, [h["mean_solution_length"] for h in history], "o-", color="C0")
    ax_len.set(xlabel="epoch", ylabel="mean training solution tokens")
    ax_len.yaxis.label.set_color("C0")
    accs = [(e, h["val_answer_acc"]) for e, h in zip(epochs, history) if h["val_answer_acc"] is not None]
    if accs:
        ax_acc = ax_len.twinx()
        ax_acc.plot([e for e, _ in accs], [a for _, a in accs], "s--", color="C1")
        ax_acc.set(ylabel="validation answer accuracy", ylim=(0, 1.02))
        ax_acc.yaxis.label.set_color("C1")
    if title:
        ax_len.set_title(title)
    fig.tight_layout()
    fig.savefig(png_path, dpi=120)
    plt.close(fig)


def read_history(csv_path: Path) -> list[dict[str, float | None]]:
    """``cache_history.csv`` back as numbers (an empty accuracy cell is None)."""
    with open(csv_path, newline="", encoding="utf-8") as handle:
        return [{k: (float(v) if v not in ("", "None") else None) for k, v in row.items()}
                for row in csv.DictReader(handle)]


def plot_history_runs(runs: dict[str, Sequence[dict[str, Any]]], png_path: Path, title: str = "") -> None:
    """Several runs' histories side by side: mean training-solution length and validation accuracy per epoch
    (e.g. a run with axing against its twin without)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_len, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.5))
    for i, (label, history) in enumerate(runs.items()):
        ax_len.plot([h["epoch"] for h in history], [h["mean_solution_length"] for h in history], "-",
                    color=f"C{i}", label=label)
        accs = [(h["epoch"], h["val_answer_acc"]) for h in history if h["val_answer_acc"] is not None]
        ax_acc.plot([e for e, _ in accs], [a for _, a in accs], "-", color=f"C{i}", label=label)
    ax_len.set(xlabel="epoch", ylabel="mean training solution tokens")
    ax_acc.set(xlabel="epoch", ylabel="validation answer accuracy", ylim=(0, 1.02))
    ax_len.legend(fontsize=8)
    ax_acc.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(png_path, dpi=120)
    plt.close(fig)
