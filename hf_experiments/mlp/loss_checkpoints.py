"""Loss checkpoints (modelscape's `LOSS_CHECKPOINTS`): the first step the smoothed training loss falls below
each threshold, and a stop once every threshold is crossed.

The loss of every optimizer step is smoothed by an exponential moving average; thresholds are absolute, or
relative to the first step's loss. `LossCheckpointCallback` tracks the crossings (saved with every checkpoint),
and the `Trainer` mixin `LossCheckpointMixin` feeds it the loss of every step, which `Trainer` does not expose.

Design: `docs/sweeps_and_mlp.md`, section "Loss checkpoints".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState


def threshold_key(threshold: float, relative: bool) -> str:
    """The metrics name of one threshold: ``step_to_loss_0.1`` or ``step_to_rel_loss_0.5``."""
    return f"step_to_{'rel_' if relative else ''}loss_{threshold:g}"


class LossThresholds:
    """EMA of the training loss and the first step it falls below each threshold (framework-free logic)."""

    def __init__(self, thresholds: Sequence[float], relative: bool = False, ema_smoother: float = 0.9) -> None:
        if not 0.0 <= ema_smoother < 1.0:
            raise ValueError(f"ema_smoother={ema_smoother!r} is invalid; expected a number in [0, 1)")
        for t in thresholds:
            if not (isinstance(t, (int, float)) and t > 0 and math.isfinite(t)):
                raise ValueError(
                    f"loss_checkpoints: threshold {t!r} is invalid; expected finite numbers > 0"
                    + (" (fractions of the initial loss)" if relative else "")
                )
        self.thresholds = sorted((float(t) for t in thresholds), reverse=True)
        self.relative = relative
        self.ema_smoother = float(ema_smoother)
        self.ema: float | None = None
        self.initial_loss: float | None = None
        self.last_step = 0
        self.crossed: dict[float, int | None] = {t: None for t in self.thresholds}

    def absolute(self, threshold: float) -> float:
        """The loss value a threshold stands for (relative ones need the initial loss)."""
        return threshold * self.initial_loss if self.relative else threshold

    @property
    def all_crossed(self) -> bool:
        return bool(self.thresholds) and all(s is not None for s in self.crossed.values())

    def update(self, step: int, loss: float) -> bool:
        """Add the loss of `step`; returns True once every threshold has been crossed."""
        loss = float(loss)
        if self.ema is None:
            self.ema, self.initial_loss = loss, loss
        else:
            self.ema = self.ema_smoother * self.ema + (1.0 - self.ema_smoother) * loss
        self.last_step = step
        for t in self.thresholds:
            if self.crossed[t] is None and self.ema < self.absolute(t):
                self.crossed[t] = step
        return self.all_crossed

    def metrics(self) -> dict[str, Any]:
        out: dict[str, Any] = {threshold_key(t, self.relative): s for t, s in self.crossed.items()}
        out.update(
            initial_loss=self.initial_loss,
            final_ema_loss=self.ema,
            all_loss_checkpoints_crossed=self.all_crossed,
        )
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            "ema": self.ema,
            "initial_loss": self.initial_loss,
            "last_step": self.last_step,
            "crossed": [[t, s] for t, s in self.crossed.items()],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.ema, self.initial_loss = state["ema"], state["initial_loss"]
        self.last_step = state.get("last_step", 0)
        saved = {float(t): s for t, s in state["crossed"]}
        self.crossed = {t: saved.get(t) for t in self.thresholds}


class LossCheckpointCallback(TrainerCallback, ExportableState):
    """Tracks `LossThresholds` over training and stops it once all thresholds are crossed (if `stop`)."""

    def __init__(
        self,
        thresholds: Sequence[float],
        relative: bool = False,
        ema_smoother: float = 0.9,
        stop: bool = True,
    ) -> None:
        self.tracker = LossThresholds(thresholds, relative, ema_smoother)
        self.stop = stop
        self._step_loss = 0.0
        self._n_micro = 0

    def record(self, loss: torch.Tensor | float) -> None:
        """One micro-batch's loss, divided by the accumulation steps (what `training_step` returns)."""
        self._step_loss += float(loss)
        self._n_micro += 1

    def on_train_begin(self, args, state, control, **kwargs):
        saved = (state.stateful_callbacks or {}).get(type(self).__name__)
        if isinstance(saved, dict) and "tracker" in saved.get("attributes", {}):
            self.tracker.load_state_dict(saved["attributes"]["tracker"])  # resumed from a checkpoint

    def on_step_end(self, args, state, control, **kwargs):
        if self._n_micro == 0:
            return control
        loss, self._step_loss, self._n_micro = self._step_loss, 0.0, 0
        if self.tracker.update(state.global_step, loss) and self.stop:
            control.should_training_stop = True
        return control

    def state(self) -> dict[str, Any]:
        return {
            "args": {
                "thresholds": self.tracker.thresholds,
                "relative": self.tracker.relative,
                "ema_smoother": self.tracker.ema_smoother,
                "stop": self.stop,
            },
            "attributes": {"tracker": self.tracker.state_dict()},
        }


class LossCheckpointMixin:
    """Trainer mixin: feeds each step's loss to the `LossCheckpointCallback`s; logs the EMA as `ema_loss`."""

    def _loss_checkpoint_callbacks(self) -> list[LossCheckpointCallback]:
        return [cb for cb in self.callback_handler.callbacks if isinstance(cb, LossCheckpointCallback)]

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        for cb in self._loss_checkpoint_callbacks():
            cb.record(loss)
        return loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:
            for cb in self._loss_checkpoint_callbacks()[:1]:
                if cb.tracker.ema is not None:
                    logs["ema_loss"] = cb.tracker.ema
        super().log(logs, start_time)


__all__ = ["LossCheckpointCallback", "LossCheckpointMixin", "LossThresholds", "threshold_key"]
