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

import shutil
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from transformers import Trainer
from transformers.trainer_utils import rotate_checkpoints
from transformers.utils import logging

from .callbacks import CurrentIntervalsCallback, PreemptionCallback
from .microbatch import MicrobatchingMixin
from .run_folder import COMPLETE_MARKER, write_json_atomic
from .schedules import step_schedule

logger = logging.get_logger(__name__)


RUN_CONFIG = "run_config.json"


class ExperimentTrainer(MicrobatchingMixin, Trainer):
    """`Trainer` with complete-marked checkpoints, preemption handling, bounded evaluation, micro-batching,
    length bucketing and the step schedule (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.preempted = False
        self.add_callback(PreemptionCallback(self))
        self.add_callback(CurrentIntervalsCallback())
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
            self._created_lr_scheduler = True
        return super().create_scheduler(num_training_steps, optimizer)

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        limit = self.args.save_total_limit
        self.args.save_total_limit = None  # rotate only after the new checkpoint is marked complete
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self.args.save_total_limit = limit
        run_dir = self._get_output_dir(trial=trial)
        ckpt = f"{run_dir}/checkpoint-{self.state.global_step}"
        if dist.is_available() and dist.is_initialized():
            dist.barrier()  # every rank's RNG file and shard is on disk
        if self.args.should_save:
            if (Path(run_dir) / RUN_CONFIG).is_file():  # the checkpoint restores its config too
                shutil.copy2(Path(run_dir) / RUN_CONFIG, f"{ckpt}/{RUN_CONFIG}")
            write_json_atomic(f"{ckpt}/{COMPLETE_MARKER}", {"global_step": self.state.global_step,
                                                             "time": time.time()})
            rotate_checkpoints(output_dir=run_dir, save_total_limit=limit,
                               best_model_checkpoint=self.state.best_model_checkpoint, use_mtime=False)

    def evaluate(self, eval_dataset: Any = None, ignore_keys: list[str] | None = None,
                 metric_key_prefix: str = "eval") -> dict[str, float]:
        n = getattr(self.args, "max_eval_batches", None)
        ds = eval_dataset if eval_dataset is not None else self.eval_dataset
        if n is not None and ds is not None and hasattr(ds, "select"):
            rows = n * self.args.per_device_eval_batch_size * self.args.world_size
            if len(ds) > rows:
                ds = ds.select(range(rows))
        return super().evaluate(ds, ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix)
