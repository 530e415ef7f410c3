"""Solutions as text for the manipulations: length, ground truth, correctness (every
step evaluates to the problem's value), stepwise internalization, and the result type every manipulation
returns. A solution is `"s1=s2=...=answer"` (no problem, no EOS).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from hf_experiments.blotch.arithmetic import evaluate, solve


@dataclass
class ManipulationResult:
    """One manipulation round over some rows; ``solutions[i]`` is the kept solution of row i or None."""

    solutions: list[str | None]
    tried: int
    kept: int
    answer_acc: float
    stats: dict[str, float] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Solutions as text
# --------------------------------------------------------------------------------------------
def solution_length(solution: str) -> int:
    """Tokens of a solution incl. EOS (one token per character), as ``blotch_eval`` counts generated ones."""
    return len(solution) + 1


def ground_truth(problem: str, solver: str = "original") -> str:
    """The solver's solution ``"s1=...=answer"`` of ``problem``."""
    return "=".join(step for step, _ in solve(problem, solver))


def _is_number(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _evaluates_to(expr: str, value: int) -> bool:
    """``evaluate(expr) == value``, False for anything that does not parse (model output may be garbage)."""
    try:
        return evaluate(expr) == value
    except (ValueError, RecursionError):
        return False


def is_correct(problem: str, solution: str, value: int | None = None) -> bool:
    """Every step evaluates to the problem's value and the last step is that number; never raises on bad text."""
    if value is None:
        value = evaluate(problem)
    steps = solution.split("=")
    return _is_number(steps[-1]) and all(_evaluates_to(s, value) for s in steps)


def internalize(solutions: Sequence[str], k: int) -> list[str]:
    """Drop the first ``k`` intermediate steps of each solution; the final answer always stays."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise ValueError(f"k={k!r} is not allowed; use an integer >= 0 (intermediate steps to drop)")
    out = []
    for solution in solutions:
        *steps, answer = solution.split("=")
        out.append("=".join([*steps[k:], answer]))
    return out


def _check_common(batch_size: int, max_new_tokens: int, temperature: float = 0.0) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} is not allowed; use an integer >= 1")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens!r} is not allowed; use an integer >= 1")
    if temperature < 0:
        raise ValueError(f"temperature={temperature!r} is not allowed; use 0 (greedy) or a positive value")


def _check_pairs(problems: Sequence[str], solutions: Sequence[str]) -> None:
    if len(problems) != len(solutions):
        raise ValueError(
            f"solutions has {len(solutions)} rows but problems has {len(problems)}; pass one solution per problem"
        )


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------
@contextmanager
def _inference(model: Any) -> Iterator[Any]:
    """The bare model (DDP/compiled wrappers removed) in eval mode without gradients; mode restored after."""
    from accelerate.utils import extract_model_from_parallel

    inner = extract_model_from_parallel(model)
    was_training = inner.training
    inner.eval()
    try:
        with torch.no_grad():
            yield inner
    finally:
        inner.train(was_training)


def _n_real_tokens(model: Any) -> int:
    """Ids below this are the tokenizer's; the rest are blotch tokens (inputs only)."""
    cfg = model.config
    return int(cfg.vocab_size) - int(getattr(cfg, "n_btokens", 0) or 0)


def _result(kept: list[str | None], tried: int, acc: float, stats: dict[str, float]) -> ManipulationResult:
    lengths = [solution_length(s) for s in kept if s is not None]
    if lengths:
        stats = {**stats, "mean_kept_len": float(np.mean(lengths))}
    return ManipulationResult(kept, tried, len(lengths), float(acc), stats)
