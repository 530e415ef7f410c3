"""Callbacks every `ExperimentTrainer` has: preemption (SIGTERM/SIGUSR1 -> a checkpoint at the next step
boundary on all ranks, then a clean stop) and the current config's logging/eval/save intervals on resume.
"""

from __future__ import annotations

import signal
from typing import Any

from transformers import Trainer, TrainerCallback
from transformers.utils import logging

from . import signals

logger = logging.get_logger(__name__)


class PreemptionCallback(TrainerCallback):
    """Turns SIGTERM/SIGUSR1 during training into "save a checkpoint at the end of this step, then stop".

    `runner.main` installs the handlers (`core.signals`) before anything else; a trainer used on its own installs
    them for the length of `train()` and restores the previous ones after."""

    def __init__(self, trainer: Trainer) -> None:  # an `ExperimentTrainer`: it reads `trainer.preempted`
        self.trainer = trainer
        self._previous: dict[int, Any] = {}
        self._previous_mode: bool | None = None  # None: not inside train()

    def on_train_begin(self, args, state, control, **kwargs):
        if not signals.installed():
            self._previous = {sig: signal.getsignal(sig) for sig in signals.PREEMPT_SIGNALS}
            signals.install()
        self._previous_mode = signals.start_deferring()

    def on_train_end(self, args, state, control, **kwargs):
        self.restore()

    def restore(self) -> None:
        """Back to the handlers and mode from before `train()` (also when it raised: `ExperimentTrainer.train`)."""
        if self._previous_mode is None:
            return
        signals.stop_deferring(self._previous_mode)
        self._previous_mode = None
        for sig, prev in self._previous.items():
            signal.signal(sig, prev)
        self._previous.clear()

    def on_step_end(self, args, state, control, **kwargs):
        if signals.any_rank_received():  # all ranks stop at the same step, even if only one got the signal
            self.trainer.preempted = True
            control.should_save = True
            control.should_training_stop = True
        return control


class CurrentIntervalsCallback(TrainerCallback):
    """On resume, transformers keeps the checkpoint's logging/eval/save intervals (it only warns that they
    differ); a restored run's command-line `--logging_steps` / `--eval_steps` / `--save_steps` must win."""

    def on_train_begin(self, args, state, control, **kwargs):
        state.compute_steps(args, state.max_steps)
