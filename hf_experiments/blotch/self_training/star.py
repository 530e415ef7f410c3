"""STaR bootstrapping (keep a correct model solution shorter than the ground truth),
augmentation (re-solve cached rows, keep strictly shorter correct ones) and STaR's rationalization, as functions
of a model and rows; batched generation with the KV cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from hf_experiments.blotch.arithmetic import evaluate
from hf_experiments.blotch.evaluation import Rollouts, btoken_id, continue_prompts, final_answer, generate_solutions

from .solutions import (
    ManipulationResult,
    _check_common,
    _check_pairs,
    _evaluates_to,
    _inference,
    _is_number,
    _result,
    ground_truth,
    is_correct,
    solution_length,
)


# --------------------------------------------------------------------------------------------
# STaR and augmentation
# --------------------------------------------------------------------------------------------
def _complete(rolls: Rollouts) -> np.ndarray:
    """(N, R) bool: the rollout finished and its text is every token written (a special token such as BOS
    inside the text would vanish when decoded)."""
    chars = np.array([[solution_length(t) for t in texts] for texts in rolls.texts]).reshape(rolls.lengths.shape)
    return rolls.finished & (chars == rolls.lengths)


def _solve_and_filter(
    model: Any,
    tokenizer: Any,
    problems: Sequence[str],
    values: Sequence[int],
    limits: Sequence[int],
    *,
    temperature: float,
    blotch_p: float | None,
    batch_size: int,
    max_new_tokens: int,
    n_rollouts: int,
    progress: Any = None,
) -> tuple[list[str | None], float, list[bool]]:
    """Sample solutions; keep the shortest correct rollout of row i iff ``solution_length < limits[i]``.

    Returns the kept solutions, the share of rollouts with the correct final answer and, per row, whether any
    rollout had the correct final answer.
    """
    n = n_rollouts if temperature > 0 else 1  # greedy rollouts would all be the same
    if not problems:  # an empty shard of a rank
        return [], 0.0, []
    with _inference(model) as inner:
        rolls = generate_solutions(
            inner, tokenizer, list(problems), blotch_p, temperature, n, batch_size, max_new_tokens, progress=progress
        )
    kept: list[str | None] = []
    answered: list[bool] = []
    hits = 0
    for texts, done, value, limit in zip(rolls.texts, _complete(rolls), values, limits):
        right = [bool(d) and final_answer(t) == value for t, d in zip(texts, done)]
        hits += sum(right)
        answered.append(any(right))
        good = [t for t, r in zip(texts, right) if r and solution_length(t) < limit and is_correct("", t, value)]
        kept.append(min(good, key=len) if good else None)
    acc = hits / (len(problems) * n) if len(problems) else 0.0
    return kept, acc, answered


def star(
    model: Any,
    tokenizer: Any,
    problems: Sequence[str],
    *,
    temperature: float,
    blotch_p: float | None,
    batch_size: int,
    max_new_tokens: int,
    rationalize: bool = False,
    n_rollouts: int = 1,
    rationalize_temp: float = 1.0,
    rationalize_tries: int = 8,
    solver: str = "original",
    progress: Any = None,
) -> ManipulationResult:
    """STaR bootstrapping on new problems: keep a correct model solution shorter than the ground truth.

    ``rationalize``: rows whose sampled final answer was wrong get a second chance through :func:`rationalize`
    (kept under the same rule). ``answer_acc`` is the share of rollouts with the right final answer.
    ``solver`` writes the ground truth whose length a kept solution must beat. ``progress``: a tqdm bar advanced
    by the problems of every finished generation batch.
    """
    _check_common(batch_size, max_new_tokens, temperature)
    if isinstance(n_rollouts, bool) or not isinstance(n_rollouts, (int, np.integer)) or n_rollouts < 1:
        raise ValueError(f"n_rollouts={n_rollouts!r} is not allowed; use an integer >= 1")
    values = [evaluate(p) for p in problems]
    limits = [solution_length(ground_truth(p, solver)) for p in problems]
    kept, acc, answered = _solve_and_filter(
        model,
        tokenizer,
        problems,
        values,
        limits,
        temperature=temperature,
        blotch_p=blotch_p,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        n_rollouts=n_rollouts,
        progress=progress,
    )
    stats: dict[str, float] = {}
    if rationalize:
        retry = [i for i, ok in enumerate(answered) if not ok]
        found = _rationalize(
            model,
            tokenizer,
            [problems[i] for i in retry],
            [values[i] for i in retry],
            [limits[i] for i in retry],
            temperature=rationalize_temp,
            tries=rationalize_tries,
            blotch_p=blotch_p,
            batch_size=batch_size,
            max_new_tokens=max_new_tokens,
        )
        for i, solution in zip(retry, found):
            kept[i] = solution
        stats = {"rationalize_tried": float(len(retry)), "rationalized": float(sum(s is not None for s in found))}
    return _result(kept, len(problems), acc, stats)


def augment(
    model: Any,
    tokenizer: Any,
    problems: Sequence[str],
    solutions: Sequence[str],
    *,
    temperature: float,
    blotch_p: float | None,
    batch_size: int,
    max_new_tokens: int,
    n_rollouts: int = 1,
    progress: Any = None,
) -> ManipulationResult:
    """Re-solve cached rows; keep a correct solution strictly shorter than the cached one (``progress``: see
    :func:`star`)."""
    _check_common(batch_size, max_new_tokens, temperature)
    _check_pairs(problems, solutions)
    if isinstance(n_rollouts, bool) or not isinstance(n_rollouts, (int, np.integer)) or n_rollouts < 1:
        raise ValueError(f"n_rollouts={n_rollouts!r} is not allowed; use an integer >= 1")
    values = [evaluate(p) for p in problems]
    limits = [solution_length(s) for s in solutions]
    kept, acc, _ = _solve_and_filter(
        model,
        tokenizer,
        problems,
        values,
        limits,
        temperature=temperature,
        blotch_p=blotch_p,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        n_rollouts=n_rollouts,
        progress=progress,
    )
    return _result(kept, len(problems), acc, {})


# --------------------------------------------------------------------------------------------
# Rationalization
# --------------------------------------------------------------------------------------------
def _n_ops(expr: str) -> int:
    return expr.count("+") + expr.count("*")


def rationalize(
    model: Any,
    tokenizer: Any,
    problems: Sequence[str],
    *,
    temperature: float = 1.0,
    tries: int = 8,
    blotch_p: float | None = None,
    batch_size: int = 256,
    max_new_tokens: int = 128,
    limits: Sequence[int] | None = None,
) -> list[str | None]:
    """STaR's rationalization for problems the model got wrong: the answer steers the search, not the prompt.

    Our small models never saw a hint format, so the hint is a *step verifier*: solutions are written one step
    at a time; for every unfinished row ``tries`` continuations of ``problem = kept steps =`` are sampled up to
    the next ``=`` or EOS (one batched ``generate`` call per step, KV cache), and a step is accepted only if it
    evaluates to the known value (a final step must be that number, followed by EOS) and repeats neither the
    problem nor an earlier step. Among accepted candidates a final answer wins, else the one with the fewest
    operators (closest to the answer), then the shortest. A row fails when no candidate passes or the
    solution would reach ``limits[i]`` tokens (default: the ground truth's length; a kept rationale is shorter).
    Every kept token was sampled by the model from a prompt without any hint, and the result passes
    :func:`is_correct`.
    """
    _check_common(batch_size, max_new_tokens, temperature)
    if temperature == 0:
        raise ValueError("temperature=0 is not allowed for rationalization; use a positive sampling temperature")
    if isinstance(tries, bool) or not isinstance(tries, (int, np.integer)) or tries < 1:
        raise ValueError(f"tries={tries!r} is not allowed; use an integer >= 1")
    values = [evaluate(p) for p in problems]
    if limits is None:
        limits = [solution_length(ground_truth(p)) for p in problems]
    elif len(limits) != len(problems):
        raise ValueError(f"limits has {len(limits)} entries for {len(problems)} problems; pass one per problem")
    return _rationalize(
        model,
        tokenizer,
        problems,
        values,
        limits,
        temperature=temperature,
        tries=tries,
        blotch_p=blotch_p,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
    )


def _rationalize(
    model: Any,
    tokenizer: Any,
    problems: Sequence[str],
    values: Sequence[int],
    limits: Sequence[int],
    *,
    temperature: float,
    tries: int,
    blotch_p: float | None,
    batch_size: int,
    max_new_tokens: int,
) -> list[str | None]:
    eos, eq = tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("=")
    paths: list[list[str]] = [[] for _ in problems]
    done: list[str | None] = [None] * len(problems)
    # Token budget of the whole solution incl. EOS: under the limit and within max_new_tokens.
    budget = [min(max_new_tokens, limit - 1) for limit in limits]
    active = [i for i in range(len(problems)) if budget[i] >= 2]
    with _inference(model) as inner:
        btok = btoken_id(inner, blotch_p)
        while active:
            # Room left for the next step incl. its '=' or EOS; a row without room for "digit EOS" fails.
            active = [i for i in active if budget[i] - sum(len(s) + 1 for s in paths[i]) >= 2]
            if not active:
                break
            room = [budget[i] - sum(len(s) + 1 for s in paths[i]) for i in active]  # "s1=s2=" written so far
            prefixes = [problems[i] + "".join("=" + s for s in paths[i]) for i in active]
            texts, length, ends = continue_prompts(
                inner,
                tokenizer,
                prefixes,
                btok,
                temperature=temperature,
                n=tries,
                batch_size=max(1, batch_size // tries),
                max_new_tokens=max(room),
                stop_ids=(eos, eq),
            )
            # A special token inside a text (BOS, UNK) vanishes when decoded: such a step is not what was written.
            stops = [int(e) if e >= 0 and len(t) == k else None for t, k, e in zip(texts, length, ends)]
            still = []
            for a, i in enumerate(active):
                seen = {problems[i], *paths[i]}
                best: tuple[tuple[int, int, int, int], str, bool] | None = None
                for r in range(tries):
                    text, stop = texts[a * tries + r], stops[a * tries + r]
                    if stop is None or not text or len(text) + 1 > room[a]:
                        continue
                    final = stop == eos
                    if final:
                        ok = _is_number(text) and int(text) == values[i]
                    else:
                        ok = text not in seen and _evaluates_to(text, values[i])
                    if ok:
                        key = (0 if final else 1, _n_ops(text), len(text), r)
                        if best is None or key < best[0]:
                            best = (key, text, final)
                if best is None:
                    continue  # no verified step: the row fails
                paths[i].append(best[1])
                if best[2]:
                    done[i] = "=".join(paths[i])
                else:
                    still.append(i)
            active = still
    return [
        s if s is not None and is_correct("", s, v) and solution_length(s) < lim else None
        for s, v, lim in zip(done, values, limits)
    ]
