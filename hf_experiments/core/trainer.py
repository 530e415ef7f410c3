"""`ExperimentTrainer`: the `Trainer` every experiment uses or subclasses.

Identical to `transformers.Trainer` except:
- a checkpoint counts as complete only once every rank has written its part: `_save_checkpoint` ends with a
  barrier and a `checkpoint-complete.json` marker, and old checkpoints are rotated only after the new one is
  marked, so a crash at any moment leaves at least one complete checkpoint (the Trainer's own writes are
  not atomic, and its rotation runs before the RNG files of other ranks exist);
- SIGTERM / SIGUSR1 (cluster preemption) lead to a checkpoint at the next optimizer-step boundary and a clean
  stop (`preempted` is then true). `enable_jit_checkpoint` exists in transformers, but it saves inside a step
  (before the optimizer step, after dropout RNG was consumed), handles SIGTERM only and acts per rank; a
  resumed run would not continue exactly. Ours saves between steps and all ranks agree;
- `max_eval_batches` bounds evaluation;
- the seed framework's batching and schedule options, for every experiment (`docs/framework.md`):
  `per_device_batch_size` (micro-batches of at most that many rows, uneven split allowed, exact update) and
  `length_bucketed_sampling` (`microbatch.MicrobatchingMixin`), and the step schedule `lr_sched_steps` /
  `lr_sched_gamma` (`step_schedule`). With these unset it is `Trainer`'s own dataloader, loss and schedule;
- on resume the current config's logging/eval/save intervals apply, not the checkpoint's;
- each checkpoint carries a copy of the run's `run_config.json`, so `--restore_from <checkpoint>` can restore
  the config with it (the seed's `-restore`).
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import Trainer
from transformers.utils import logging

from .callbacks import CheckpointCompletionCallback, CurrentIntervalsCallback, PreemptionCallback
from .microbatch import MicrobatchingMixin
from .schedules import step_schedule
from .trainer_internals import TrainerInternalsMixin, mark_scheduler_created

logger = logging.get_logger(__name__)



class ExperimentTrainer(MicrobatchingMixin, TrainerInternalsMixin, Trainer):
    """`Trainer` with complete-marked checkpoints, preemption handling, bounded evaluation, micro-batching,
    length bucketing and the step schedule (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.preempted = False
        self.add_callback(PreemptionCallback(self))
        self.add_callback(CurrentIntervalsCallback())
        self.add_callback(CheckpointCompletionCallback())  # the last on_save callback (see its docstring)
        if self._uses_update_batches() and isinstance(self.train_dataset, torch.utils.data.IterableDataset):
            # A stream of whole batches (e.g. the mlp experiment) has no rows to split or bucket; the planned
            # gradient accumulation would silently sum several whole batches.
            raise ValueError(
                f"per_device_batch_size={self.args.per_device_batch_size} / length_bucketed_sampling="
                f"{self.args.length_bucketed_sampling} are not allowed with a streamed training set "
                f"({type(self.train_dataset).__name__}); they need a map-style dataset of rows")

    def create_scheduler(self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None):
        """`lr_sched_steps` set: the step schedule (`step_schedule`); otherwise `lr_scheduler_type`'s."""
        steps = getattr(self.args, "lr_sched_steps", None)
        if self.lr_scheduler is None and steps:
            self.lr_scheduler = step_schedule(
                optimizer or self.optimizer,
                steps,
                self.args.lr_sched_gamma,
                self.args.get_warmup_steps(num_training_steps),
            )
            mark_scheduler_created(self)
        return super().create_scheduler(num_training_steps, optimizer)

    def evaluate(self, eval_dataset: Any = None, ignore_keys: list[str] | None = None,
                 metric_key_prefix: str = "eval") -> dict[str, float]:
        n = getattr(self.args, "max_eval_batches", None)
        ds = eval_dataset if eval_dataset is not None else self.eval_dataset
        if n is not None and ds is not None and hasattr(ds, "select"):
            rows = n * self.args.per_device_eval_batch_size * self.args.world_size
            if len(ds) > rows:
                ds = ds.select(range(rows))
        return super().evaluate(ds, ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix)
