"""Per-epoch history of a data-cache run (mean training-solution length, greedy
validation accuracy): recorded by a callback, written as `cache_history.csv` / `.png`, compared across runs.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from transformers import TrainerCallback

from hf_experiments.core.plots import figure, write_csv

from .rounds import CacheContext, _max_new_tokens, _Result, run_sharded
from .schedule import ManipulationSchedule


# --------------------------------------------------------------------------------------------
# History: solution length and validation accuracy over epochs
# --------------------------------------------------------------------------------------------
class CacheHistoryCallback(TrainerCallback):
    """At the start of every epoch (after that epoch's manipulations), record the cache's mean solution
    length and the model's greedy answer accuracy on ``problems`` (validation; split across ranks)."""

    def __init__(
        self, ctx: CacheContext, schedule: ManipulationSchedule, problems: Sequence[str], answers: Sequence[int]
    ) -> None:
        self.ctx, self.schedule = ctx, schedule
        self.problems, self.answers = list(problems), list(answers)

    def answer_acc(self) -> float | None:
        if not self.problems:
            return None
        from hf_experiments.blotch.evaluation import final_answer, generate_solutions

        ctx = self.ctx
        budget = _max_new_tokens(ctx, self.problems, ctx.max_positions)

        def run(local: np.ndarray, progress: Any = None):
            rolls = generate_solutions(
                ctx.model,
                ctx.tokenizer,
                [self.problems[i] for i in local],
                ctx.blotch_p,
                0.0,
                1,
                ctx.batch_size,
                budget,
                progress=progress,
            )
            hits = [final_answer(t[0]) == self.answers[i] for t, i in zip(rolls.texts, local)]
            return _Result([None] * len(local), len(local), float(np.mean(hits)), {})

        return run_sharded(len(self.problems), run, ctx, (0, 9), "cache history eval").answer_acc

    def record(self, state: Any, epoch: int) -> dict[str, Any]:
        cache = self.ctx.cache
        row = {
            "epoch": epoch,
            "step": state.global_step,
            "rows": len(cache),
            "mean_solution_length": cache.mean_solution_length(),
            "val_answer_acc": self.answer_acc(),
        }
        cache.ledger.history.append(row)
        self.ctx.trainer.log(
            {
                "cache/history_mean_solution_length": row["mean_solution_length"],
                **({"cache/val_answer_acc": row["val_answer_acc"]} if row["val_answer_acc"] is not None else {}),
            }
        )
        return row

    def on_epoch_begin(self, args, state, control, **kwargs):
        c = self.schedule.epochs_done(state)
        if c is not None and all(h["epoch"] != c for h in self.ctx.cache.ledger.history):
            self.record(state, c)
        return control


def write_history(
    history: Sequence[dict[str, Any]], csv_path: Path, png_path: Path | None = None, title: str = ""
) -> None:
    """``cache_history.csv`` and a plot of mean training-solution length and validation accuracy."""
    if not history:
        return
    write_csv(csv_path, history)
    if png_path is None:
        return
    epochs = [h["epoch"] for h in history]
    with figure(png_path, figsize=(6, 3.5)) as (_, ax_len):
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


def read_history(csv_path: Path) -> list[dict[str, float | None]]:
    """``cache_history.csv`` back as numbers (an empty accuracy cell is None)."""
    with open(csv_path, newline="", encoding="utf-8") as handle:
        return [
            {k: (float(v) if v not in ("", "None") else None) for k, v in row.items()} for row in csv.DictReader(handle)
        ]


def plot_history_runs(runs: dict[str, Sequence[dict[str, Any]]], png_path: Path, title: str = "") -> None:
    """Several runs' histories side by side: mean training-solution length and validation accuracy per epoch
    (e.g. a run with axing against its twin without)."""
    with figure(png_path, 1, 2, figsize=(9, 3.5)) as (fig, (ax_len, ax_acc)):
        for i, (label, history) in enumerate(runs.items()):
            ax_len.plot(
                [h["epoch"] for h in history],
                [h["mean_solution_length"] for h in history],
                "-",
                color=f"C{i}",
                label=label,
            )
            accs = [(h["epoch"], h["val_answer_acc"]) for h in history if h["val_answer_acc"] is not None]
            ax_acc.plot([e for e, _ in accs], [a for _, a in accs], "-", color=f"C{i}", label=label)
        ax_len.set(xlabel="epoch", ylabel="mean training solution tokens")
        ax_acc.set(xlabel="epoch", ylabel="validation answer accuracy", ylim=(0, 1.02))
        ax_len.legend(fontsize=8)
        ax_acc.legend(fontsize=8)
        if title:
            fig.suptitle(title)
