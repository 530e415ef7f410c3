"""Evaluation of blotch models by free-running generation: does the model reach the right answer, and how long
is the solution it writes?

Prompts ``[btoken] BOS problem =`` are continued by ``model.generate`` with the KV cache (batched, greedily or at
``temperature``). Per split and blotch level it reports ``answer_acc`` (the headline), ``token_acc``, generated
and ground-truth lengths and ``valid_frac``, and writes them to a CSV and a plot.

Generation length: unless ``max_new_tokens`` is given, each problem may write at most the longest ground-truth
solution of a problem of its length plus a margin (:func:`solution_budgets`), and problems with similar budgets
share a batch, so a model that never writes EOS (an untrained one) costs about the ground truth's length instead
of the context's.

Design: `docs/semantic_blotching.md`, section "Evaluation".
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from hf_experiments.core.plots import figure, write_csv

from .blotching import blotch_levels, excise, pad_rows, step_segments
from .tokenization_arith import encode_rows


@dataclass
class Rollouts:
    """Generated solutions: ``texts[i][r]`` is rollout r of problem i (``"s1=...=answer"``, no EOS)."""

    texts: list[list[str]]
    lengths: np.ndarray  # (N, R) solution tokens incl. EOS
    finished: np.ndarray  # (N, R) bool: EOS was produced


def btoken_id(model: Any, blotch_p: float | None) -> int | None:
    """The blotch-token id for level ``blotch_p`` (closest level), or None for a model without btokens."""
    cfg = model.config
    if not getattr(cfg, "n_btokens", 0):
        return None
    levels = blotch_levels(cfg.n_btokens, cfg.blotch_p_min, cfg.blotch_p_max)
    p = cfg.blotch_p_min if blotch_p is None else blotch_p
    return cfg.btoken_offset + int((levels - float(p)).abs().argmin())


def prompt_batch(tokenizer: Any, problems: Sequence[str], btoken: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded ``[btoken] BOS problem =`` prompts and their attention mask, both (B, T)."""
    rows = encode_rows(tokenizer, [f"{p}=" for p in problems], add_eos=False)
    if btoken is not None:
        rows = [np.concatenate([[btoken], r]) for r in rows]
    flipped = pad_rows([r[::-1].copy() for r in rows], tokenizer.pad_token_id)  # right-pad the reversed rows
    ids = flipped.flip(1)  # (B, T) left-padded
    mask = (torch.arange(ids.shape[1]).flip(0)[None] < torch.tensor([len(r) for r in rows])[:, None]).long()
    return ids, mask


# Generation budget of a problem: the longest ground-truth solution (EOS included) among the problems of its length
# (as many terms and digits), L, plus L // 2 + 8. A model's solution length follows the problem's shape, not the
# solver's shortcuts: a trained blotch.json model writes a correct 41-token path for a problem whose own ground truth
# has 10 tokens, but never more than 1.19 L (measured on blotch.json and direct.json at every level, both splits).
BUDGET_SLACK_FRACTION = 0.5
BUDGET_SLACK_TOKENS = 8
BUDGET_BATCH_RATIO = 3.0  # measured on blotch.json (untrained): 2x faster than no cut on validation, as fast on OOD


def solution_budgets(
    solutions: Sequence[str], problems: Sequence[str], n_positions: int, max_new_tokens: int | None = None
) -> np.ndarray:
    """Per problem, the tokens it may generate: ``max_new_tokens``, or by default the budget above (from the
    longest ground truth among problems of the same length); always within the model's context
    (``[btoken] BOS problem =`` comes first)."""
    plen = np.array([len(p) for p in problems], dtype=np.int64)
    room = n_positions - (plen + 3)
    if max_new_tokens is not None:
        return np.maximum(1, np.minimum(max_new_tokens, room))
    gt = np.array([len(s) + 1 for s in solutions], dtype=np.int64)
    longest = np.zeros(int(plen.max(initial=0)) + 1, dtype=np.int64)
    np.maximum.at(longest, plen, gt)  # per problem length, its longest ground truth
    like = longest[plen]
    budget = like + (like * BUDGET_SLACK_FRACTION).astype(np.int64) + BUDGET_SLACK_TOKENS
    return np.maximum(1, np.minimum(budget, room))


class RowBudgets(StoppingCriteria):
    """Stops row r once it has generated ``budgets[r]`` tokens (transformers pads it from then on), so one batch
    holds rows of different budgets."""

    def __init__(self, budgets: torch.Tensor, prompt_len: int) -> None:
        self.budgets, self.prompt_len = budgets, prompt_len

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        written = input_ids.shape[1] - self.prompt_len
        return (self.budgets.to(input_ids.device) <= written).bool()


def batch_budgets(budgets: np.ndarray, prompt_lens: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Batches (index arrays) of at most ``batch_size`` rows, in ascending budget, cut also where a row's budget
    exceeds ``BUDGET_BATCH_RATIO`` times the batch's first: the few long-solution problems then run in their own
    small batch instead of holding a whole batch of short ones to their length."""
    order = np.lexsort((prompt_lens, budgets))
    batches, start = [], 0
    for k in range(1, len(order) + 1):
        if k == len(order) or k - start == batch_size or budgets[order[k]] > BUDGET_BATCH_RATIO * budgets[order[start]]:
            batches.append(order[start:k])
            start = k
    return batches


@torch.no_grad()
def continue_prompts(
    model: Any,
    tokenizer: Any,
    prefixes: Sequence[str],
    btok: int | None,
    *,
    temperature: float,
    n: int,
    batch_size: int,
    max_new_tokens: int,
    stop_ids: Sequence[int],
    budgets: Sequence[int] | None = None,
    progress: Any = None,
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Continue ``[btok] BOS prefix =`` prompts until a token of ``stop_ids`` (batched, KV cache; greedy when
    ``temperature == 0``). For each prefix and sample (``n`` per prefix, flattened prefix-major) returns the
    decoded text before the stop, its token count, and the stop token id (-1 when its budget ran out).

    ``budgets``: per prefix, at most this many new tokens (also at most ``max_new_tokens``); prefixes are then
    batched by budget. ``progress``: a tqdm bar advanced by the prefixes of every finished batch."""
    device = next(model.parameters()).device
    sample = temperature > 0
    stops = torch.tensor(list(stop_ids))
    total = len(prefixes) * n
    texts: list[str] = [""] * total
    lengths, ends = np.zeros(total, dtype=np.int64), np.zeros(total, dtype=np.int64)
    # A batch decodes until its longest row stops, so batch prompts of similar length (same number of terms
    # and digits, hence similar solution lengths): 1.6-1.8x faster on mixed 2-3-term sums than input order.
    # With budgets, batch by budget (batch_budgets): a batch that never writes EOS stops at its own largest budget.
    by_len = np.array([len(p) for p in prefixes], dtype=np.int64)
    limit = None if budgets is None else np.minimum(np.asarray(budgets, dtype=np.int64), max_new_tokens)
    if limit is None:
        order = np.argsort(by_len, kind="stable")
        batches = [order[s : s + batch_size] for s in range(0, len(prefixes), batch_size)]
    else:
        batches = batch_budgets(limit, by_len, batch_size)
    for idx in batches:
        ids, mask = prompt_batch(tokenizer, [prefixes[i] for i in idx], btok)
        rows_limit = None if limit is None else torch.from_numpy(np.repeat(limit[idx], n))  # (B*n,)
        out = model.generate(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            max_new_tokens=max_new_tokens if rows_limit is None else int(rows_limit.max()),
            stopping_criteria=None
            if rows_limit is None
            else StoppingCriteriaList([RowBudgets(rows_limit, ids.shape[1])]),
            do_sample=sample,
            temperature=temperature if sample else None,
            top_k=None,
            top_p=None,
            num_return_sequences=n,
            eos_token_id=list(stop_ids),
            pad_token_id=tokenizer.pad_token_id,
        )
        new = out[:, ids.shape[1] :].cpu()  # (B*n, new), prefix-major
        is_stop = torch.isin(new, stops)
        has_stop = is_stop.any(1)
        first = is_stop.float().argmax(1)  # (B*n,) index of the first stop token (0 when none)
        cut = new.shape[1] if rows_limit is None else rows_limit.clamp(max=new.shape[1])  # padded after its budget
        length = torch.where(has_stop, first, cut)
        body = torch.where(torch.arange(new.shape[1])[None] < length[:, None], new, tokenizer.pad_token_id)
        slots = (idx[:, None] * n + np.arange(n)[None]).reshape(-1)  # (B*n,) places in the input order
        for slot, text in zip(slots, tokenizer.batch_decode(body, skip_special_tokens=True)):
            texts[slot] = text
        lengths[slots] = length.numpy()
        ends[slots] = torch.where(has_stop, new.gather(1, first[:, None])[:, 0], -1).numpy()
        if progress is not None:
            progress.update(len(idx))
    return texts, lengths, ends


def final_answer(solution: str) -> int | None:
    """The number after the last ``=`` (or the whole text without ``=``), None when it is not a number."""
    last = solution.rsplit("=", 1)[-1]
    return int(last) if last.isdigit() else None


@torch.no_grad()
def generate_solutions(
    model: Any,
    tokenizer: Any,
    problems: Sequence[str],
    blotch_p: float | None = None,
    temperature: float = 0.0,
    n_rollouts: int = 1,
    batch_size: int = 256,
    max_new_tokens: int = 128,
    budgets: Sequence[int] | None = None,
    progress: Any = None,
) -> Rollouts:
    """Batched free-running generation with the KV cache; greedy when ``temperature == 0``. ``budgets`` and
    ``progress``: see :func:`continue_prompts`."""
    if temperature < 0:
        raise ValueError(f"temperature={temperature} is not allowed; use 0 (greedy) or a positive value")
    if n_rollouts < 1:
        raise ValueError(f"n_rollouts={n_rollouts} is not allowed; use n_rollouts >= 1")
    was_training = model.training
    model.eval()
    eos = tokenizer.eos_token_id
    decoded, length, ends = continue_prompts(
        model,
        tokenizer,
        problems,
        btoken_id(model, blotch_p),
        temperature=temperature,
        n=n_rollouts,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        stop_ids=[eos],
        budgets=budgets,
        progress=progress,
    )
    done = ends == eos  # (N*R,)
    n_tok = length + done  # solution tokens, EOS included
    texts = [decoded[i * n_rollouts : (i + 1) * n_rollouts] for i in range(len(problems))]
    model.train(was_training)
    return Rollouts(texts, n_tok.reshape(-1, n_rollouts), done.reshape(-1, n_rollouts))


def majority_answer(texts: Sequence[str]) -> int | None:
    answers = [a for a in (final_answer(t) for t in texts) if a is not None]
    return Counter(answers).most_common(1)[0][0] if answers else None


@torch.no_grad()
def teacher_forced_token_acc(
    model: Any,
    tokenizer: Any,
    problems: Sequence[str],
    solutions: Sequence[str],
    blotch_p: float | None = None,
    batch_size: int = 256,
) -> float:
    """Next-token accuracy on the ground-truth solutions (tokens after the first ``=``, EOS included)."""
    model.eval()
    device = next(model.parameters()).device
    btok = btoken_id(model, blotch_p)
    eq = tokenizer.convert_tokens_to_ids("=")
    hits = total = 0
    for start in range(0, len(problems), batch_size):
        rows = encode_rows(
            tokenizer,
            [f"{p}={s}" for p, s in zip(problems[start : start + batch_size], solutions[start : start + batch_size])],
        )
        ids = pad_rows(rows, tokenizer.pad_token_id)  # (B, T)
        _, n_eq = step_segments(ids, eq, tokenizer.pad_token_id)
        drop = torch.zeros(len(ids), int(n_eq.max()) + 1, dtype=torch.bool)
        prefix = None if btok is None else torch.full((len(ids),), btok)
        batch = excise(ids, drop, eq, tokenizer.pad_token_id, prefix=prefix)
        labels = batch.pop("labels").to(device)
        logits = model(**{k: v.to(device) for k, v in batch.items()}).logits  # (B, T, V)
        target = labels[:, 1:]
        pred = logits[:, :-1].argmax(-1)
        valid = target != -100
        hits += int(((pred == target) & valid).sum())
        total += int(valid.sum())
    return hits / max(total, 1)


def evaluate_split(
    model: Any,
    tokenizer: Any,
    problems: Sequence[str],
    solutions: Sequence[str],
    answers: Sequence[int],
    blotch_p: float | None = None,
    temperature: float = 0.0,
    n_rollouts: int = 1,
    batch_size: int = 256,
    max_new_tokens: int | None = None,
    progress: Any = None,
) -> dict[str, float]:
    """All metrics of one split at one blotch level (see the module docstring). ``max_new_tokens``: the
    generation limit of every problem (within the context); None: each problem's :func:`solution_budgets`."""
    gt_len = np.array([len(s) + 1 for s in solutions])  # characters = tokens, + EOS
    budgets = solution_budgets(solutions, problems, model.config.n_positions, max_new_tokens)
    rolls = generate_solutions(
        model,
        tokenizer,
        problems,
        blotch_p,
        temperature,
        n_rollouts if temperature > 0 else 1,
        batch_size,
        int(budgets.max()),
        budgets=budgets,
        progress=progress,
    )
    voted = [majority_answer(t) for t in rolls.texts]
    flat = [t for ts in rolls.texts for t in ts]
    valid = np.array([final_answer(t) is not None for t in flat]).reshape(rolls.finished.shape) & rolls.finished
    gen_steps = np.array([t.count("=") + 1 for t in flat])
    return {
        "answer_acc": float(np.mean([v == a for v, a in zip(voted, answers)])),
        "token_acc": teacher_forced_token_acc(model, tokenizer, problems, solutions, blotch_p, batch_size),
        "gen_len": float(rolls.lengths.mean()),
        "gt_len": float(gt_len.mean()),
        "len_ratio": float(rolls.lengths.mean() / gt_len.mean()),
        "gen_steps": float(gen_steps.mean()),
        "gt_steps": float(np.mean([s.count("=") + 1 for s in solutions])),
        "valid_frac": float(valid.mean()),
        "n": len(problems),
    }


def eval_levels(model: Any) -> list[float | None]:
    """The blotch levels to sweep: every btoken level, or [None] for a model without blotch tokens."""
    cfg = model.config
    if not getattr(cfg, "n_btokens", 0):
        return [None]
    return [round(float(p), 4) for p in blotch_levels(cfg.n_btokens, cfg.blotch_p_min, cfg.blotch_p_max)]


def sweep(
    model: Any,
    tokenizer: Any,
    splits: dict[str, Any],
    temperature: float = 0.0,
    n_rollouts: int = 1,
    batch_size: int = 256,
    max_new_tokens: int | None = None,
    progress: Any = None,
) -> list[dict[str, Any]]:
    """Rows ``{split, blotch_level, metrics...}`` for every split (a Dataset/dict with problem, solution,
    answer columns) and every level of :func:`eval_levels`. ``progress``: a tqdm bar over
    ``sum(len(split)) * len(eval_levels(model))`` problems (:func:`sweep_size`)."""
    rows = []
    for name, data in splits.items():
        for level in eval_levels(model):
            if progress is not None:
                progress.set_postfix_str(name if level is None else f"{name} @{level}")
            metrics = evaluate_split(
                model,
                tokenizer,
                list(data["problem"]),
                list(data["solution"]),
                list(data["answer"]),
                level,
                temperature,
                n_rollouts,
                batch_size,
                max_new_tokens,
                progress,
            )
            rows.append({"split": name, "blotch_level": "none" if level is None else level, **metrics})
    return rows


def sweep_size(model: Any, splits: dict[str, Any]) -> int:
    """The problems :func:`sweep` generates for (each split at each level), the total of its progress bar."""
    return sum(len(data["problem"]) for data in splits.values()) * len(eval_levels(model))


def write_results(
    rows: list[dict[str, Any]], csv_path: str | Path, png_path: str | Path | None = None, title: str = ""
) -> None:
    """The sweep as CSV, and a plot of accuracy and solution length against the blotch level."""
    write_csv(csv_path, rows)
    if png_path is None:
        return
    with figure(png_path, 1, 2, figsize=(9, 3.5)) as (fig, (ax_acc, ax_len)):
        for split in dict.fromkeys(r["split"] for r in rows):
            sub = [r for r in rows if r["split"] == split]
            x = [0.0 if r["blotch_level"] == "none" else float(r["blotch_level"]) for r in sub]
            marker = "o" if len(sub) == 1 else "."
            ax_acc.plot(x, [r["answer_acc"] for r in sub], marker=marker, label=split)
            (line,) = ax_len.plot(x, [r["gen_len"] for r in sub], marker=marker, label=f"{split} generated")
            ax_len.plot(
                x, [r["gt_len"] for r in sub], ls="--", marker="x", color=line.get_color(), label=f"{split} truth"
            )
        ax_acc.set(xlabel="blotch level", ylabel="final-answer accuracy", ylim=(0, 1.02))
        ax_len.set(xlabel="blotch level", ylabel="solution length (tokens)")
        ax_acc.legend(fontsize=8)
        ax_len.legend(fontsize=8)
        if title:
            fig.suptitle(title)


def plot_runs(
    runs: dict[str, tuple[list[dict[str, Any]], float]], png_path: str | Path, split: str = "validation"
) -> None:
    """Several runs in one figure: accuracy and generated length against the blotch level. ``runs`` maps a
    label to (rows of :func:`sweep`, the x of a model without blotch tokens: its training ``blotch_p``)."""
    with figure(png_path, 1, 2, figsize=(9, 3.5)) as (_, (ax_acc, ax_len)):
        for label, (rows, x_none) in runs.items():
            sub = [r for r in rows if r["split"] == split]
            x = [x_none if r["blotch_level"] == "none" else float(r["blotch_level"]) for r in sub]
            ax_acc.plot(x, [float(r["answer_acc"]) for r in sub], marker="o", label=label)
            ax_len.plot(x, [float(r["gen_len"]) for r in sub], marker="o", label=label)
        first_rows = next(iter(runs.values()))[0]
        gt = float(next(r for r in first_rows if r["split"] == split)["gt_len"])
        ax_len.axhline(gt, ls="--", color="grey", label="ground truth")
        xlabel = "blotch level (fraction of steps dropped)"
        ax_acc.set(xlabel=xlabel, ylabel=f"{split} final-answer accuracy", ylim=(0, 1.02))
        ax_len.set(xlabel=xlabel, ylabel="generated solution tokens")
        ax_acc.legend(fontsize=8)
        ax_len.legend(fontsize=8)
