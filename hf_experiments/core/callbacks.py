"""Callbacks every `ExperimentTrainer` has: preemption (SIGTERM/SIGUSR1 -> a checkpoint at the next step
boundary on all ranks, then a clean stop), the current config's logging/eval/save intervals on resume, and the
`stop_when` target.
"""

from __future__ import annotations

import operator
import signal
from typing import Any

from transformers import Trainer, TrainerCallback
from transformers.utils import logging

from . import signals
from .config import ConfigError, parse_stop_when

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


_COMPARE = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}


class StopWhenCallback(TrainerCallback):
    """`stop_when`: stop training at the first evaluation whose metric meets the target (then the final
    evaluation and model follow as after `max_steps`); the step is logged, and the run folder's
    `trainer_state.json` has it as `global_step`. Written here: transformers' `EarlyStoppingCallback` stops on
    a lack of improvement, not at a target.

    A metric name no evaluation reports is an error at the first step after an evaluation (one line naming
    `stop_when` and the metrics that exist), not a run that silently trains to `max_steps`."""

    def __init__(self, stop_when: str) -> None:
        self.text = stop_when
        self.metric, self.op, self.value = parse_stop_when(stop_when)
        self._seen: set[str] = set()
        self._found = False
        self._training = False

    def on_train_begin(self, args, state, control, **kwargs):
        self._training = True

    def on_train_end(self, args, state, control, **kwargs):
        self._check_found()  # also when the only evaluation was at the last step
        self._training = False  # the final evaluation after train() decides nothing

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        metrics = metrics or {}
        self._seen.update(metrics)
        if self.metric not in metrics:
            return control
        self._found = True
        if not self._training:
            return control
        if _COMPARE[self.op](float(metrics[self.metric]), self.value) and not control.should_training_stop:
            logger.warning(
                f"stop_when {self.text}: {self.metric}={metrics[self.metric]:.6g} at step {state.global_step}"
            )
            control.should_training_stop = True
            # a checkpoint at the stop: a crash during the final evaluation resumes here, not before the target
            control.should_save = str(getattr(args.save_strategy, "value", args.save_strategy)) != "no"
        return control

    def on_step_end(self, args, state, control, **kwargs):
        self._check_found()
        return control

    def _check_found(self) -> None:
        if self._seen and not self._found:
            found = ", ".join(sorted(k for k in self._seen if not k.endswith(("_runtime", "_per_second"))))
            raise ConfigError("stop_when", self.text, f"a metric an evaluation reports; these exist: {found}")
