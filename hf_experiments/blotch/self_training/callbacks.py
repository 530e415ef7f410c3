"""The manipulations as Trainer callbacks: STaR, augmentation, axing and stepwise
internalization, each a round over the cache when the schedule says so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from hf_experiments.blotch.arithmetic import ProblemParams, distinct_problems, problem_space_size

from .axing import axe
from .data_cache import solution_length
from .rounds import (
    CacheContext,
    CacheManipulation,
    Merged,
    _max_new_tokens,
    run_sharded,
    select_rows,
)
from .schedule import ManipulationSchedule
from .solutions import internalize
from .star import augment, star


class StarCallback(CacheManipulation):
    """STaR: solve ``loops * batch`` new problems (never in train/val/cache) at ``temperature``; add the
    correct solutions that are shorter than the ground truth, as new rows (``origin="star"``).

    New problems come from ``params`` excluding ``exclude`` (the dataset's train and validation problems)
    and every problem in the cache. When fewer new problems remain than asked for (a small space), the
    round tries what is left; when none remain it tries nothing (logged ``star/tried = 0``).
    """

    kind = "star"

    def __init__(
        self,
        ctx: CacheContext,
        schedule: ManipulationSchedule,
        params: ProblemParams,
        exclude: set[str],
        loops: int,
        temperature: float,
        rationalize: bool = False,
        star_fn: Callable | None = None,
    ) -> None:
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
        ctx = self.ctx
        fn = self.star_fn or star
        problems = self.new_problems(self.loops * ctx.batch_size, round_)
        from hf_experiments.blotch.arithmetic import solve

        longest = max(
            (solution_length("=".join(s for s, _ in solve(p, self.params.solver))) for p in problems), default=1
        )
        budget = _max_new_tokens(ctx, problems, longest)

        def run(local: np.ndarray, progress: Any = None):
            return fn(
                ctx.model,
                ctx.tokenizer,
                [problems[i] for i in local],
                temperature=self.temperature,
                blotch_p=ctx.blotch_p,
                batch_size=ctx.batch_size,
                max_new_tokens=budget,
                progress=progress,
                rationalize=self.rationalize,
                solver=self.params.solver,
            )

        merged = run_sharded(len(problems), run, ctx, (round_, 1), f"star round {round_}")
        keep = [i for i, s in enumerate(merged.solutions) if s is not None]
        counts = ctx.cache.add([problems[i] for i in keep], [merged.solutions[i] for i in keep], "star", round_)
        table = self._table([problems[i] for i in keep], [None] * len(keep), [merged.solutions[i] for i in keep])
        return merged, table, counts


class AugmentCallback(CacheManipulation):
    """Augmentation: re-solve ``loops * batch`` cached rows (all with -1) at ``temperature``; keep correct,
    strictly shorter solutions, replacing the row (``in_place``) or as new rows (``origin="aug"``)."""

    kind = "aug"

    def __init__(
        self,
        ctx: CacheContext,
        schedule: ManipulationSchedule,
        loops: int,
        temperature: float,
        in_place: bool = True,
        augment_fn: Callable | None = None,
    ) -> None:
        super().__init__(ctx, schedule)
        self.loops, self.temperature, self.in_place, self.augment_fn = loops, temperature, in_place, augment_fn

    def apply(self, round_, state):
        ctx, cache = self.ctx, self.ctx.cache
        fn = self.augment_fn or augment
        rows = select_rows(len(cache), self.loops, ctx.batch_size, ctx.rng(round_, 2))
        problems = [cache.problems[i] for i in rows]
        solutions = [cache.solutions[i] for i in rows]
        budget = _max_new_tokens(ctx, problems, max((solution_length(s) for s in solutions), default=1))

        def run(local: np.ndarray, progress: Any = None):
            return fn(
                ctx.model,
                ctx.tokenizer,
                [problems[i] for i in local],
                [solutions[i] for i in local],
                temperature=self.temperature,
                blotch_p=ctx.blotch_p,
                batch_size=ctx.batch_size,
                max_new_tokens=budget,
                progress=progress,
            )

        merged = run_sharded(len(rows), run, ctx, (round_, 2), f"aug round {round_}")
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
    removal costs least (``axing.axe``), when within tolerance; in place and permanent."""

    kind = "axe"

    def __init__(
        self,
        ctx: CacheContext,
        schedule: ManipulationSchedule,
        loops: int,
        tol: float,
        abs_tol: bool,
        comp_steps: int,
        axe_fn: Callable | None = None,
        rule: str = "ours",
        abs_limit: float | None = None,
        rel_limit: float | None = None,
    ) -> None:
        super().__init__(ctx, schedule)
        self.loops, self.tol, self.abs_tol, self.comp_steps, self.axe_fn = loops, tol, abs_tol, comp_steps, axe_fn
        self.rule, self.abs_limit, self.rel_limit = rule, abs_limit, rel_limit

    def apply(self, round_, state):
        ctx, cache = self.ctx, self.ctx.cache
        fn = self.axe_fn or axe
        rows = select_rows(len(cache), self.loops, ctx.batch_size, ctx.rng(round_, 3))
        problems = [cache.problems[i] for i in rows]
        solutions = [cache.solutions[i] for i in rows]
        budget = _max_new_tokens(ctx, problems, max((solution_length(s) for s in solutions), default=1))

        def run(local: np.ndarray, progress: Any = None):
            return fn(
                ctx.model,
                ctx.tokenizer,
                [problems[i] for i in local],
                [solutions[i] for i in local],
                tol=self.tol,
                abs_tol=self.abs_tol,
                comp_steps=self.comp_steps,
                blotch_p=ctx.blotch_p,
                batch_size=ctx.batch_size,
                max_new_tokens=budget,
                progress=progress,
                rule=self.rule,
                abs_limit=self.abs_limit,
                rel_limit=self.rel_limit,
            )

        merged = run_sharded(len(rows), run, ctx, (round_, 3), f"axe round {round_}")
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

    def __init__(
        self, ctx: CacheContext, schedule: ManipulationSchedule, k: int, internalize_fn: Callable | None = None
    ) -> None:
        super().__init__(ctx, schedule)
        if k < 1:
            raise ValueError(f"k={k} is not allowed; use an integer >= 1")
        self.k, self.internalize_fn = k, internalize_fn

    def apply(self, round_, state):
        cache = self.ctx.cache
        fn = self.internalize_fn or internalize
        old = list(cache.solutions)
        new = fn(old, self.k)
        changed = [i for i, (o, s) in enumerate(zip(old, new)) if o != s]
        cache.replace(changed, [new[i] for i in changed], "internalize", round_)
        changed_set = set(changed)
        merged = Merged(
            [new[i] if i in changed_set else None for i in range(len(old))], len(old), len(changed), float("nan"), {}
        )
        table = self._table([cache.problems[i] for i in changed], [old[i] for i in changed], [new[i] for i in changed])
        return merged, table, {"replaced": len(changed)}
