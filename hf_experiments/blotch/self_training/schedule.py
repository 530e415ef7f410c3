"""When manipulation rounds run: at an epoch start, every `aug_mod` epochs or on a
training-loss plateau (`ReduceLROnPlateau`'s rule over the epochs since the last round), from `pre_epochs` to
`last_aug_epoch`. Design: `docs/data_cache.md`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from transformers import TrainerCallback

from .data_cache import DataCache


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


def epoch_mean_losses(
    log_history: Sequence[dict], epoch_starts: Sequence[int], epoch_updates: Sequence[int]
) -> list[float | None]:
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
