"""The three data-cache manipulations of semantic blotching (SPEC §1) and two peers' options, as pure functions of
a model and lists of rows: STaR bootstrapping, augmentation, axing, STaR's rationalization and stepwise
internalization.

Every function is rank-agnostic: it gets problems (and solutions) and returns one kept solution or ``None`` per
row in a :class:`ManipulationResult`. The caller (the data cache's callbacks) shards rows across ranks, gathers
and rewrites the cache. A solution is ``"s1=s2=...=answer"`` (no problem, no EOS); its length is
:func:`solution_length`, the tokens after the first ``=`` with EOS, as ``blotch_eval`` counts them.

A solution is *correct* (:func:`is_correct`) iff every step parses and evaluates (``arithmetic.evaluate``) to
the problem's value and the last step is a plain number. Generated text that is malformed, unfinished (no EOS
within ``max_new_tokens``) or loops is simply not kept; it never raises.

* **STaR** (:func:`star`): sample a solution for each new problem at ``temperature``; keep it iff correct and
  shorter (tokens) than the solver's ground truth. With ``n_rollouts > 1`` the shortest kept rollout wins.
* **Augmentation** (:func:`augment`): the same for cached rows; keep iff correct and strictly shorter than the
  cached solution.
* **Axing** (:func:`axe`): for the rows the model solves (greedy, finished, final answer correct), every single
  intermediate step ``j`` is a removal candidate (never the problem, never the final answer). All candidates of
  all rows are scored in big padded teacher-forced batches (:func:`removal_costs`): the mean per-token loss of
  *what follows* step ``j`` — segments ``j+1 .. min(j + comp_steps, K)`` where segment ``K`` is the answer with
  its EOS and each segment includes the ``=`` that opens it — with the step (``L_with``, the full row) and
  without it (``L_without``, the row with step ``j`` and its ``=`` deleted: compact, contiguous positions, exactly
  the row that would be trained on). Both average the same tokens, so the per-token normalisation is exact.
  Removing the last intermediate step therefore compares the answer. The cost is ``L_without - L_with`` with
  ``abs_tol``, else ``(L_without - L_with) / L_with`` (``L_with`` floored at 1e-6). Of the candidates whose
  *answer stays correct* — the model's teacher-forced argmax reproduces every answer digit and EOS in the
  shortened row — the least-cost one is removed when its cost is ``<= tol``.
* **Rationalization** (STaR's option, :func:`rationalize`): see its docstring; the "hint" is a step verifier
  that knows the answer, never text in the prompt, so nothing of it can leak into the kept rationale.
* **Internalization** (:func:`internalize`): drop the first ``k`` intermediate steps ("Learning to Internalize
  CoT Step by Step"); the caller raises ``k`` every epoch.

Readings of the seed where it is ambiguous (documented in ``docs/data_cache.md``): ``abs_axe_tol`` means the
*signed* loss difference (a removal that lowers the loss always passes, it is not ``|diff|``);
``comp_steps = -1`` compares everything that follows; the answer check is teacher-forced (free-running from the
shortened prefix would just regenerate the removed step); candidates failing it are skipped before the
least-cost choice rather than vetoing the row.

Generation is batched on the model's device with the KV cache (``model.generate`` through
``blotch_eval.generate_solutions`` or ``blotch_eval.continue_prompts``); scoring is one forward per padded
batch of rows sorted by length. A DDP/compiled model is unwrapped and put in eval mode for the call, its mode
restored after.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .blotch_eval import Rollouts, btoken_id, continue_prompts, final_answer, generate_solutions
from .blotching import pad_rows
from .data.arithmetic import evaluate, solve
from .tokenization_arith import encode_rows

REL_FLOOR = 1e-6  # L_with floor of the relative axing cost: a perfectly predicted window is not a 0 division


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


def ground_truth(problem: str) -> str:
    """The solver's solution ``"s1=...=answer"`` of ``problem``."""
    return "=".join(step for step, _ in solve(problem))


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
            inner, tokenizer, list(problems), blotch_p, temperature, n, batch_size, max_new_tokens
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
) -> ManipulationResult:
    """STaR bootstrapping on new problems: keep a correct model solution shorter than the ground truth.

    ``rationalize``: rows whose sampled final answer was wrong get a second chance through :func:`rationalize`
    (kept under the same rule). ``answer_acc`` is the share of rollouts with the right final answer.
    """
    _check_common(batch_size, max_new_tokens, temperature)
    if isinstance(n_rollouts, bool) or not isinstance(n_rollouts, (int, np.integer)) or n_rollouts < 1:
        raise ValueError(f"n_rollouts={n_rollouts!r} is not allowed; use an integer >= 1")
    values = [evaluate(p) for p in problems]
    limits = [solution_length(ground_truth(p)) for p in problems]
    kept, acc, answered = _solve_and_filter(
        model, tokenizer, problems, values, limits, temperature=temperature, blotch_p=blotch_p,
        batch_size=batch_size, max_new_tokens=max_new_tokens, n_rollouts=n_rollouts,
    )
    stats: dict[str, float] = {}
    if rationalize:
        retry = [i for i, ok in enumerate(answered) if not ok]
        found = _rationalize(
            model, tokenizer, [problems[i] for i in retry], [values[i] for i in retry], [limits[i] for i in retry],
            temperature=rationalize_temp, tries=rationalize_tries, blotch_p=blotch_p, batch_size=batch_size,
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
) -> ManipulationResult:
    """Re-solve cached rows; keep a correct solution strictly shorter than the cached one."""
    _check_common(batch_size, max_new_tokens, temperature)
    _check_pairs(problems, solutions)
    if isinstance(n_rollouts, bool) or not isinstance(n_rollouts, (int, np.integer)) or n_rollouts < 1:
        raise ValueError(f"n_rollouts={n_rollouts!r} is not allowed; use an integer >= 1")
    values = [evaluate(p) for p in problems]
    limits = [solution_length(s) for s in solutions]
    kept, acc, _ = _solve_and_filter(
        model, tokenizer, problems, values, limits, temperature=temperature, blotch_p=blotch_p,
        batch_size=batch_size, max_new_tokens=max_new_tokens, n_rollouts=n_rollouts,
    )
    return _result(kept, len(problems), acc, {})


def _result(kept: list[str | None], tried: int, acc: float, stats: dict[str, float]) -> ManipulationResult:
    lengths = [solution_length(s) for s in kept if s is not None]
    if lengths:
        stats = {**stats, "mean_kept_len": float(np.mean(lengths))}
    return ManipulationResult(kept, tried, len(lengths), float(acc), stats)


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
        model, tokenizer, problems, values, limits, temperature=temperature, tries=tries, blotch_p=blotch_p,
        batch_size=batch_size, max_new_tokens=max_new_tokens,
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
                inner, tokenizer, prefixes, btok, temperature=temperature, n=tries,
                batch_size=max(1, batch_size // tries), max_new_tokens=max(room), stop_ids=(eos, eq),
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


# --------------------------------------------------------------------------------------------
# Axing
# --------------------------------------------------------------------------------------------
@dataclass
class RemovalCosts:
    """Every single-step removal of some rows, flat over candidates (C,)."""

    row: np.ndarray  # (C,) row index
    step: np.ndarray  # (C,) removed intermediate step, 1-based (segment j of the row)
    loss_with: np.ndarray  # (C,) mean token loss of what follows, step kept
    loss_without: np.ndarray  # (C,) the same tokens, step removed
    answer_ok: np.ndarray  # (C,) bool: teacher-forced argmax reproduces the answer digits and EOS, step removed

    def cost(self, abs_tol: bool) -> np.ndarray:
        """``L_without - L_with``, or relative to ``L_with`` (floored) when not ``abs_tol``."""
        diff = self.loss_without - self.loss_with
        return diff if abs_tol else diff / np.maximum(self.loss_with, REL_FLOOR)


def _segment_stats(
    model: Any, tokenizer: Any, texts: Sequence[str], btok: int | None, batch_size: int, n_segments: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Teacher-forced rows ``[btok] BOS text EOS``: per row and segment (the ``=`` opens a segment), the
    summed token loss, the token count and the answer-token argmax misses ('=' excluded); each (R, S)."""
    device = next(model.parameters()).device
    eq = tokenizer.convert_tokens_to_ids("=")
    n_real = _n_real_tokens(model)
    rows = encode_rows(tokenizer, list(texts))
    if btok is not None:
        rows = [np.concatenate([[btok], r]) for r in rows]
    order = np.argsort([len(r) for r in rows], kind="stable")  # similar lengths share a batch: little padding
    loss_sum = np.zeros((len(rows), n_segments))
    count = np.zeros((len(rows), n_segments))
    wrong = np.zeros((len(rows), n_segments))
    for start in range(0, len(rows), batch_size):
        idx = order[start : start + batch_size]
        ids = pad_rows([rows[i] for i in idx], tokenizer.pad_token_id)  # (B, T) right-padded
        lengths = torch.tensor([len(rows[i]) for i in idx])
        mask = (torch.arange(ids.shape[1])[None] < lengths[:, None]).long()  # (B, T)
        positions = torch.arange(ids.shape[1]).expand_as(ids)  # contiguous: the row as trained
        logits = model(
            input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=positions.to(device)
        ).logits[:, :-1, :n_real].float()  # (B, T-1, V)
        target = ids[:, 1:].to(device)  # (B, T-1)
        valid = mask[:, 1:].to(device).bool()
        ce = F.cross_entropy(logits.transpose(1, 2), target, reduction="none") * valid  # (B, T-1)
        miss = ((logits.argmax(-1) != target) & valid & (target != eq)).float()
        seg = torch.cumsum(ids == eq, 1)[:, 1:].clamp(max=n_segments - 1).to(device)  # (B, T-1) of each target
        for out, val in ((loss_sum, ce), (count, valid.float()), (wrong, miss)):
            acc = torch.zeros(len(idx), n_segments, device=device).scatter_add_(1, seg, val)
            out[idx] = acc.cpu().double().numpy()
    return loss_sum, count, wrong


def removal_costs(
    model: Any,
    tokenizer: Any,
    problems: Sequence[str],
    solutions: Sequence[str],
    *,
    comp_steps: int,
    blotch_p: float | None = None,
    batch_size: int = 256,
) -> RemovalCosts:
    """Teacher-forced losses of every single-intermediate-step removal of every row (module docstring).

    All full rows and all shortened rows go through the model in padded batches; per-segment loss sums are
    turned into window means with prefix sums, with no loop over candidates.
    """
    _check_pairs(problems, solutions)
    if isinstance(comp_steps, bool) or not isinstance(comp_steps, (int, np.integer)) or not (
        comp_steps >= 1 or comp_steps == -1
    ):
        raise ValueError(f"comp_steps={comp_steps!r} is not allowed; use an integer >= 1, or -1 for all steps")
    split = [s.split("=") for s in solutions]
    n_seg = np.array([len(s) for s in split], dtype=np.int64)  # K: segments after the problem, the answer is segment K
    cand_row = np.repeat(np.arange(len(split)), np.maximum(n_seg - 1, 0))  # (C,)
    cand_step = np.concatenate([np.arange(1, k) for k in n_seg]) if len(split) else np.zeros(0, int)  # (C,)
    empty = np.zeros(0)
    if len(cand_row) == 0:
        return RemovalCosts(cand_row, cand_step.astype(int), empty, empty, np.zeros(0, bool))
    full = [f"{p}={s}" for p, s in zip(problems, solutions)]
    short = [
        problems[i] + "=" + "=".join(split[i][: j - 1] + split[i][j:]) for i, j in zip(cand_row, cand_step)
    ]
    width = int(n_seg.max()) + 1
    with _inference(model) as inner:
        btok = btoken_id(inner, blotch_p)
        base_loss, base_cnt, _ = _segment_stats(inner, tokenizer, full, btok, batch_size, width)
        cut_loss, cut_cnt, cut_wrong = _segment_stats(inner, tokenizer, short, btok, batch_size, width)

    def window(values: np.ndarray, rows: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Sum of segments lo..hi (inclusive) of the given rows, via prefix sums."""
        prefix = np.concatenate([np.zeros((len(values), 1)), np.cumsum(values, 1)], 1)  # (R, S+1)
        return prefix[rows, hi + 1] - prefix[rows, lo]

    k = n_seg[cand_row]
    last = k if comp_steps == -1 else np.minimum(cand_step + comp_steps, k)  # last segment compared (full row)
    cut_idx = np.arange(len(cand_row))
    # Full row: segments j+1..last; shortened row: the same tokens, renumbered j..last-1.
    loss_with = window(base_loss, cand_row, cand_step + 1, last) / window(base_cnt, cand_row, cand_step + 1, last)
    loss_without = window(cut_loss, cut_idx, cand_step, last - 1) / window(cut_cnt, cut_idx, cand_step, last - 1)
    answer_ok = cut_wrong[cut_idx, k - 1] == 0  # the answer is segment K-1 once a step is gone
    return RemovalCosts(cand_row, cand_step, loss_with, loss_without, answer_ok)


def axe(
    model: Any,
    tokenizer: Any,
    problems: Sequence[str],
    solutions: Sequence[str],
    *,
    tol: float,
    abs_tol: bool,
    comp_steps: int,
    blotch_p: float | None,
    batch_size: int,
    max_new_tokens: int,
) -> ManipulationResult:
    """Remove the least-cost single intermediate step of each row the model solves, if within ``tol``.

    ``solutions[i]`` of the result is the row minus that step, or None (unsolved, no intermediate step, no
    candidate keeps the answer, or the least cost exceeds ``tol``). ``answer_acc``: share of rows solved.
    """
    _check_common(batch_size, max_new_tokens)
    _check_pairs(problems, solutions)
    if not problems:  # an empty shard of a rank
        return _result([], 0, 0.0, {"solved": 0.0, "candidates": 0.0})
    values = [evaluate(p) for p in problems]
    with _inference(model) as inner:
        rolls = generate_solutions(inner, tokenizer, list(problems), blotch_p, 0.0, 1, batch_size, max_new_tokens)
    solved = np.array(
        [bool(d[0]) and final_answer(t[0]) == v for t, d, v in zip(rolls.texts, _complete(rolls), values)],
        dtype=bool,
    )
    # Only rows that are solved, correct (a removal then keeps them correct) and have a step to remove.
    sel = [
        i for i in range(len(problems)) if solved[i] and "=" in solutions[i] and is_correct("", solutions[i], values[i])
    ]
    kept: list[str | None] = [None] * len(problems)
    stats: dict[str, float] = {"solved": float(solved.sum()), "candidates": 0.0}
    if sel:
        rc = removal_costs(
            model, tokenizer, [problems[i] for i in sel], [solutions[i] for i in sel],
            comp_steps=comp_steps, blotch_p=blotch_p, batch_size=batch_size,
        )
        cost = np.where(rc.answer_ok, rc.cost(abs_tol), np.inf)
        order = np.lexsort((rc.step, cost, rc.row))  # per row: least cost first, ties -> earliest step
        rows, first = np.unique(rc.row[order], return_index=True)
        best = order[first]
        chosen = []
        for r, c in zip(rows, best):
            if np.isfinite(cost[c]) and cost[c] <= tol:
                i = sel[r]
                steps = solutions[i].split("=")
                kept[i] = "=".join(steps[: rc.step[c] - 1] + steps[rc.step[c] :])
                chosen.append(c)
        stats["candidates"] = float(len(rc.row))
        stats["answer_kept_frac"] = float(rc.answer_ok.mean())
        if chosen:
            stats["mean_cost"] = float(np.mean(cost[chosen]))
    acc = float(solved.mean()) if len(problems) else 0.0
    return _result(kept, len(problems), acc, stats)


__all__ = [
    "ManipulationResult",
    "RemovalCosts",
    "augment",
    "axe",
    "ground_truth",
    "internalize",
    "is_correct",
    "rationalize",
    "removal_costs",
    "solution_length",
    "star",
]
