"""Axing: for rows the model solves, remove the single intermediate step whose removal
costs least (teacher-forced loss of what follows, per token, with and without it) when within tolerance and the
answer stays correct. Readings of the seed and details: `docs/data_cache.md`; ``rule="original"`` scores and
accepts as the original's code does (``datas.axe_data``; the differences: `docs/semantic_blotching.md`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from hf_experiments.blotch.arithmetic import evaluate
from hf_experiments.blotch.blotching import pad_rows
from hf_experiments.blotch.evaluation import btoken_id, final_answer, generate_solutions
from hf_experiments.blotch.tokenization_arith import encode_rows

from .solutions import (
    ManipulationResult,
    _check_common,
    _check_pairs,
    _inference,
    _n_real_tokens,
    _result,
    is_correct,
)
from .star import _complete

REL_FLOOR = 1e-6  # L_with floor of the relative axing cost: a perfectly predicted window is not a 0 division


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
    # The original's numbers: everything after the removed step's opening '=' to the end, both divided by the
    # shortened row's token count from the cut to EOS; the full row's sum includes the removed step's own tokens.
    orig_with: np.ndarray  # (C,)
    orig_without: np.ndarray  # (C,)

    def cost(self, abs_tol: bool) -> np.ndarray:
        """``L_without - L_with``, or relative to ``L_with`` (floored) when not ``abs_tol``."""
        diff = self.loss_without - self.loss_with
        return diff if abs_tol else diff / np.maximum(self.loss_with, REL_FLOOR)


def _segment_stats(
    model: Any, tokenizer: Any, texts: Sequence[str], btok: int | None, batch_size: int, n_segments: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Teacher-forced rows ``[btok] BOS text EOS``: per row and segment (the ``=`` opens a segment), the
    summed token loss, the token count, the answer-token argmax misses ('=' excluded) and the loss of the
    segment's opening '='; each (R, S)."""
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
    eq_loss = np.zeros((len(rows), n_segments))
    for start in range(0, len(rows), batch_size):
        idx = order[start : start + batch_size]
        ids = pad_rows([rows[i] for i in idx], tokenizer.pad_token_id)  # (B, T) right-padded
        lengths = torch.tensor([len(rows[i]) for i in idx])
        mask = (torch.arange(ids.shape[1])[None] < lengths[:, None]).long()  # (B, T)
        positions = torch.arange(ids.shape[1]).expand_as(ids)  # contiguous: the row as trained
        logits = (
            model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=positions.to(device))
            .logits[:, :-1, :n_real]
            .float()
        )  # (B, T-1, V)
        target = ids[:, 1:].to(device)  # (B, T-1)
        valid = mask[:, 1:].to(device).bool()
        ce = F.cross_entropy(logits.transpose(1, 2), target, reduction="none") * valid  # (B, T-1)
        miss = ((logits.argmax(-1) != target) & valid & (target != eq)).float()
        seg = torch.cumsum(ids == eq, 1)[:, 1:].clamp(max=n_segments - 1).to(device)  # (B, T-1) of each target
        opening = ce * (target == eq)  # each segment after the problem starts with one '=' target
        for out, val in ((loss_sum, ce), (count, valid.float()), (wrong, miss), (eq_loss, opening)):
            acc = torch.zeros(len(idx), n_segments, device=device).scatter_add_(1, seg, val)
            out[idx] = acc.cpu().double().numpy()
    return loss_sum, count, wrong, eq_loss


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
    if (
        isinstance(comp_steps, bool)
        or not isinstance(comp_steps, (int, np.integer))
        or not (comp_steps >= 1 or comp_steps == -1)
    ):
        raise ValueError(f"comp_steps={comp_steps!r} is not allowed; use an integer >= 1, or -1 for all steps")
    split = [s.split("=") for s in solutions]
    n_seg = np.array([len(s) for s in split], dtype=np.int64)  # K: segments after the problem, the answer is segment K
    cand_row = np.repeat(np.arange(len(split)), np.maximum(n_seg - 1, 0))  # (C,)
    cand_step = np.concatenate([np.arange(1, k) for k in n_seg]) if len(split) else np.zeros(0, int)  # (C,)
    empty = np.zeros(0)
    if len(cand_row) == 0:
        return RemovalCosts(cand_row, cand_step.astype(int), empty, empty, np.zeros(0, bool), empty, empty)
    full = [f"{p}={s}" for p, s in zip(problems, solutions)]
    short = [problems[i] + "=" + "=".join(split[i][: j - 1] + split[i][j:]) for i, j in zip(cand_row, cand_step)]
    width = int(n_seg.max()) + 1
    with _inference(model) as inner:
        btok = btoken_id(inner, blotch_p)
        base_loss, base_cnt, _, base_eq = _segment_stats(inner, tokenizer, full, btok, batch_size, width)
        cut_loss, cut_cnt, cut_wrong, cut_eq = _segment_stats(inner, tokenizer, short, btok, batch_size, width)

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
    # The original: targets from the removed step's first token on (its opening '=' is before the cut), i.e.
    # full-row segments j..K and shortened-row segments j..K-1, each without the opening '=' of segment j.
    n_after = window(cut_cnt, cut_idx, cand_step, k - 1) - 1
    orig_without = (window(cut_loss, cut_idx, cand_step, k - 1) - cut_eq[cut_idx, cand_step]) / n_after
    orig_with = (window(base_loss, cand_row, cand_step, k) - base_eq[cand_row, cand_step]) / n_after
    return RemovalCosts(cand_row, cand_step, loss_with, loss_without, answer_ok, orig_with, orig_without)


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
    rule: Literal["ours", "original"] = "ours",
    abs_limit: float | None = None,
    rel_limit: float | None = None,
    progress: Any = None,
) -> ManipulationResult:
    """Remove the least-cost single intermediate step of each row the model solves, if within ``tol``.

    ``solutions[i]`` of the result is the row minus that step, or None (unsolved, no intermediate step, no
    candidate keeps the answer, or the least cost exceeds ``tol``). ``answer_acc``: share of rows solved.
    ``rule="original"``: the original's costs (``RemovalCosts.orig_*``), the least absolute difference chosen and
    kept when ``diff < abs_limit`` and ``diff / with < rel_limit`` (None: no limit); ``tol``, ``abs_tol`` and
    ``comp_steps`` are then unused. ``progress``: a tqdm bar advanced by the rows of every generation batch.
    """
    _check_common(batch_size, max_new_tokens)
    if rule not in ("ours", "original"):
        raise ValueError(f"rule={rule!r} is not allowed; use 'ours' or 'original'")
    _check_pairs(problems, solutions)
    if not problems:  # an empty shard of a rank
        return _result([], 0, 0.0, {"solved": 0.0, "candidates": 0.0})
    values = [evaluate(p) for p in problems]
    with _inference(model) as inner:
        rolls = generate_solutions(
            inner, tokenizer, list(problems), blotch_p, 0.0, 1, batch_size, max_new_tokens, progress=progress
        )
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
            model,
            tokenizer,
            [problems[i] for i in sel],
            [solutions[i] for i in sel],
            comp_steps=comp_steps,
            blotch_p=blotch_p,
            batch_size=batch_size,
        )
        if rule == "original":
            cost = np.where(rc.answer_ok, rc.orig_without - rc.orig_with, np.inf)
            rel = cost / np.maximum(rc.orig_with, REL_FLOOR)
            lim_abs = math.inf if abs_limit is None else abs_limit
            lim_rel = math.inf if rel_limit is None else rel_limit
            accept = np.isfinite(cost) & (cost < lim_abs) & (rel < lim_rel)
        else:
            cost = np.where(rc.answer_ok, rc.cost(abs_tol), np.inf)
            accept = np.isfinite(cost) & (cost <= tol)
        order = np.lexsort((rc.step, cost, rc.row))  # per row: least cost first, ties -> earliest step
        rows, first = np.unique(rc.row[order], return_index=True)
        best = order[first]
        chosen = []
        for r, c in zip(rows, best):
            if accept[c]:
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
