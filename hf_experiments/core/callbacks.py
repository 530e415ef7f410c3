"""Callbacks every `ExperimentTrainer` has: preemption (SIGTERM/SIGUSR1 -> a checkpoint at the next step
boundary on all ranks, then a clean stop) and the current config's logging/eval/save intervals on resume.
"""

from __future__ import annotations

import signal
from typing import Any

import torch
import torch.distributed as dist
from transformers import Trainer, TrainerCallback
from transformers.utils import logging

logger = logging.get_logger(__name__)

PREEMPT_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class PreemptionCallback(TrainerCallback):
    """Turns SIGTERM/SIGUSR1 into "save a checkpoint at the end of this step, then stop"."""

    def __init__(self, trainer: Trainer) -> None:  # an `ExperimentTrainer`: it reads `trainer.preempted`
        self.trainer = trainer
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handler(self, signum: int, frame: Any) -> None:
        logger.warning(f"received {signal.Signals(signum).name}: checkpointing at the end of this step")
        self.requested = True

    def on_train_begin(self, args, state, control, **kwargs):
        for sig in PREEMPT_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handler)

    def on_train_end(self, args, state, control, **kwargs):
        for sig, prev in self._previous.items():
            signal.signal(sig, prev)
        self._previous.clear()

    def on_step_end(self, args, state, control, **kwargs):
        flag = self.requested
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            # All ranks must stop at the same step, even if only one received the signal.
            t = torch.tensor([int(flag)], device=args.device)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            flag = bool(t.item())
        if flag:
            self.trainer.preempted = True
            control.should_save = True
            control.should_training_stop = True
        return control


class CurrentIntervalsCallback(TrainerCallback):
    """On resume, transformers keeps the checkpoint's logging/eval/save intervals (it only warns that they
    differ); a restored run's command-line `--logging_steps` / `--eval_steps` / `--save_steps` must win."""

    def on_train_begin(self, args, state, control, **kwargs):
        state.compute_steps(args, state.max_steps)
