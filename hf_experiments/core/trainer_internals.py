"""Every use of `transformers.Trainer`'s private API, in this one file (the fence).

Public hooks (`TrainerCallback`, `compute_loss`, `create_scheduler`, `get_train_dataloader`) do everything else.
What is here has no public counterpart; each piece names the transformers internals it relies on, and
`tests/core/test_trainer_internals.py` checks their signatures, tuple layouts and call order on the installed
transformers, so a rename upstream fails that test loudly instead of silently changing epoch counts or losing
checkpoints. They exist from transformers 5.3 on; the floor in `pyproject.toml` (5.17) is the oldest release
the whole suite was run on.
"""

from __future__ import annotations

import errno
import json
import math
import shutil
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from transformers import TrainerCallback
from transformers.utils import logging

from .ranks import any_rank
from .run_folder import complete_checkpoint, is_disk_full, unmark, write_json_atomic

logger = logging.get_logger(__name__)

# ----- helpers around private Trainer methods -----


def remove_unused_columns(trainer: Any, dataset: Any, description: str) -> Any:
    """`Trainer._remove_unused_columns`: the dataset's columns the model's forward does not take, dropped."""
    return trainer._remove_unused_columns(dataset, description=description)


def collator_without_unused_columns(trainer: Any, collator: Callable, description: str) -> Callable:
    """`Trainer._get_collator_with_removed_columns`: a collator that first drops the unused columns."""
    return trainer._get_collator_with_removed_columns(collator, description=description)


def loss_is_scaled_for_accumulation(trainer: Any, num_items_in_batch: Any) -> bool:
    """Whether the Trainer leaves this loss undivided by the number of micro-batches: it is already normalised
    over the whole update (the model takes `num_items_in_batch`, or a `compute_loss_func` does). The attribute
    `loss_is_scaled_for_ga` says so from transformers 5.19 on; before, the same rule is spelled out."""
    scaled = getattr(trainer, "loss_is_scaled_for_ga", None)
    if scaled is None:
        scaled = (trainer.model_accepts_loss_kwargs and num_items_in_batch is not None) or (
            trainer.compute_loss_func is not None
        )
    return bool(scaled)


def micro_batches_in_this_update(trainer: Any) -> int:
    """`Trainer.current_gradient_accumulation_steps`: micro-batches of the update being computed (fewer than
    `gradient_accumulation_steps` at the end of an epoch)."""
    return trainer.current_gradient_accumulation_steps


def mark_scheduler_created(trainer: Any) -> None:
    """Tell the Trainer the schedule was built by `create_scheduler` (`_created_lr_scheduler`), so a second
    `train()` builds a fresh one for its own horizon, as it does for its own schedules."""
    trainer._created_lr_scheduler = True


LOGGING_WINDOW = "logging-window-rank{rank}.json"


def logging_window(trainer: Any) -> dict[str, Any] | None:
    """The loss logged so far but not yet reported (`_tr_loss`, this rank's part), the running total the final
    `train_loss` divides (`_total_loss_scalar`), the step of the last report (`_globalstep_last_logged`), and the
    first step of the run the total counts from; None outside training."""
    if not hasattr(trainer, "_tr_loss"):
        return None
    return {
        "tr_loss": float(trainer._tr_loss.item()),
        "total_loss_scalar": float(trainer._total_loss_scalar),
        "globalstep_last_logged": int(trainer._globalstep_last_logged),
        "first_step": int(getattr(trainer, "_loss_first_step", 0)),
        "world_size": int(trainer.args.world_size),
    }


def restore_logging_window(trainer: Any, window: dict[str, Any]) -> None:
    """Set the Trainer's logging accumulators as they were at the checkpoint (float32 `_tr_loss`, exactly)."""
    import torch

    trainer._tr_loss = torch.tensor(window["tr_loss"], dtype=torch.float32, device=trainer.args.device)
    trainer._total_loss_scalar = window["total_loss_scalar"]
    trainer._globalstep_last_logged = window["globalstep_last_logged"]
    trainer._loss_first_step = window["first_step"]


def total_logged_loss(trainer: Any) -> float:
    """`_total_loss_scalar`: the sum of every reported loss (and, at the end, the unreported rest)."""
    return trainer._total_loss_scalar


class LoggingWindowCallback(TrainerCallback):
    """At the start of training (after the Trainer reset its accumulators): restore the window the resumed
    checkpoint carries, so the first report after a resume averages the same steps as an uninterrupted run."""

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer

    def on_train_begin(self, args, state, control, **kwargs):
        trainer = self.trainer
        trainer._loss_first_step = state.global_step
        window = getattr(trainer, "_resumed_logging_window", None)
        trainer._resumed_logging_window = None
        if window is not None:
            restore_logging_window(trainer, window)


class TrainerInternalsMixin:
    """Put before `Trainer`. Two overrides of private methods:

    - `_save_checkpoint`: a checkpoint is complete only once every rank wrote it, so the whole sequence is here,
      in this order: the old marker removed (a checkpoint rewritten at the same step is not complete while it is
      rewritten), `write_checkpoint_extras(folder)` (e.g. the data cache's rows, before the Trainer's files, so a
      Hub push carries them), the Trainer's own writes with its rotation deferred, then
      `run_folder.complete_checkpoint`: barrier, run config, marker, rotation among complete checkpoints.
      Not `on_save` callbacks: the Trainer pushes to the Hub inside `_save_checkpoint` and reporting
      integrations (W&B, MLflow, ... checkpoint uploads) run their `on_save` before any callback we add, so
      they would see the checkpoint before it is complete.
    - `_get_collator_with_removed_columns`: a collator wrapper that needs a column the model does not take
      (it has `inner` and `rewrap(inner)`, e.g. the data cache's row-seeded collator reading `cache_row`) gets
      the column filter applied to its inner collator instead of losing the column.
    """

    def write_checkpoint_extras(self, folder: Path) -> None:
        """Hook (main process): files of a subclass that belong in every checkpoint."""

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        folder = Path(self.args.output_dir) / f"checkpoint-{self.state.global_step}"
        limit = self.args.save_total_limit
        error: Exception | None = None
        try:
            if self.args.should_save:
                unmark(folder)
                self.write_checkpoint_extras(folder)
            self.args.save_total_limit = None  # rotation happens after the completion marker
            try:
                super()._save_checkpoint(model, trial)
            finally:
                self.args.save_total_limit = limit
            window = logging_window(self)
            if window is not None:  # every rank its own part of the unreported loss
                write_json_atomic(folder / LOGGING_WINDOW.format(rank=self.args.process_index), window)
        except Exception as e:
            error = e
        if any_rank(error is not None):  # all ranks stop together, none waits in a barrier
            full = error is not None and is_disk_full(error, folder)
            if self.args.should_save:
                shutil.rmtree(folder, ignore_errors=True)  # unmarked, so never resumed from: free its space
            if error is None:
                raise RuntimeError(f"another rank failed writing {folder}")
            if full:
                raise OSError(errno.ENOSPC, "No space left on device", str(folder)) from error
            raise error
        complete_checkpoint(
            folder, self.state.global_step, self.args.should_save, limit, self.state.best_model_checkpoint
        )

    def _init_training_state(
        self, max_steps, num_update_steps_per_epoch, num_train_epochs, resume_from_checkpoint, trial
    ):
        """Two additions on resume: the logging window the checkpoint carries is read (`LoggingWindowCallback`
        restores it), and a checkpoint at or past `max_steps` trains no further step (`(num_train_epochs, 0)`:
        no epoch runs), so a run interrupted after training only redoes evaluation and saving."""
        epochs, skip = super()._init_training_state(
            max_steps, num_update_steps_per_epoch, num_train_epochs, resume_from_checkpoint, trial
        )
        self._resumed_logging_window = None
        if resume_from_checkpoint is None:
            return epochs, skip
        path = Path(resume_from_checkpoint) / LOGGING_WINDOW.format(rank=self.args.process_index)
        if path.is_file():
            window = json.loads(path.read_text(encoding="utf-8"))
            if window.get("world_size") == self.args.world_size:
                self._resumed_logging_window = window
            else:
                logger.warning(
                    f"{path.parent.name} was written by {window.get('world_size')} processes: the "
                    "first loss logged after resuming averages only the steps since the checkpoint"
                )
        if 0 < max_steps <= self.state.global_step:
            return self._trained_to_the_end(resume_from_checkpoint, num_train_epochs)
        return epochs, skip

    def _trained_to_the_end(self, checkpoint: str, num_train_epochs: int) -> tuple[int, int]:
        """No epoch runs; the RNG state the first epoch would have restored (`_load_rng_state`) is restored here,
        since the final evaluation may draw from it (blotching, sampling) as it did in the uninterrupted run."""
        self._load_rng_state(checkpoint)
        return num_train_epochs, 0

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """`train_loss` over every step of the run, also when this `train()` resumed part way (transformers
        divides by this call's steps, or by all steps but only this call's losses, depending on the release)."""
        if "train_loss" in logs and getattr(self, "_loss_first_step", None) is not None:
            steps = self.state.global_step - self._loss_first_step
            logs["train_loss"] = total_logged_loss(self) / max(steps, 0.001)  # in place: also the returned metrics
        super().log(logs, start_time)

    def _get_collator_with_removed_columns(self, data_collator: Any, description: str | None = None) -> Any:
        if callable(getattr(data_collator, "rewrap", None)):
            inner = super()._get_collator_with_removed_columns(data_collator.inner, description)
            return data_collator.rewrap(inner)
        return super()._get_collator_with_removed_columns(data_collator, description)


# ----- epochs over a training set that grows between epochs -----


class EpochLedger(Protocol):
    """Where each epoch started (global step) and how many optimizer steps it had; saved with the data."""

    epoch_starts: list[int]
    epoch_updates: list[int]


def stretch_schedule(scheduler: Any, total: int) -> None:
    """Set the horizon of a transformers `LambdaLR` schedule, whose lambdas are
    `functools.partial(..., num_training_steps=N)` (`transformers.optimization`)."""
    lambdas = getattr(scheduler, "lr_lambdas", None) or []
    for i, fn in enumerate(lambdas):
        if isinstance(fn, partial) and "num_training_steps" in fn.keywords:
            lambdas[i] = partial(fn.func, *fn.args, **{**fn.keywords, "num_training_steps": total})


class GrowingEpochsMixin:
    """Put before the `Trainer` subclass: epochs over a training set whose length changes between epochs.

    `Trainer._inner_training_loop` measures `len(train_dataloader)` once and derives from it the steps per epoch,
    the number of epochs or `max_steps`, and, on resume, the epoch and batch to continue from. With a growing
    training set all of these are wrong. Subclasses provide `epoch_ledger` (an `EpochLedger` restored with the
    data on resume); then:

    - `set_initial_training_values`: with `max_steps > 0` epochs never run out (the flow callback stops the run
      at `max_steps`); on resume of an epoch run, the schedule is planned as the first epoch did;
    - `_init_training_state`: on resume, the epoch and the batches to skip come from the ledger;
    - `_run_epoch`: the dataloader is measured again at every epoch start and the ledger records it; with
      `max_steps <= 0`, `state.max_steps` and the LR horizon are re-planned as if the set stopped growing.
    `epoch_starting(epoch)` runs before each epoch's iterator (and its workers) start.
    """

    epoch_ledger: EpochLedger

    def epoch_starting(self, epoch: int) -> None:
        """Hook: called at the start of every epoch, before its data iterator exists."""

    def set_initial_training_values(self, args: Any, dataloader: Any):
        # Tuple layout (transformers >= 5.3): [0] num_train_epochs, ..., [6] max_steps.
        values = list(super().set_initial_training_values(args, dataloader))
        if args.max_steps > 0:
            values[0] = sys.maxsize  # epochs end when max_steps is reached, however long each one is
        elif self.epoch_ledger.epoch_updates:
            # Resuming: plan (and build the LR schedule) as the first epoch did; `_run_epoch` re-plans.
            values[6] = math.ceil(args.num_train_epochs * self.epoch_ledger.epoch_updates[0])
        return tuple(values)

    def _init_training_state(
        self, max_steps, num_update_steps_per_epoch, num_train_epochs, resume_from_checkpoint, trial
    ):
        epochs, skip = super()._init_training_state(
            max_steps, num_update_steps_per_epoch, num_train_epochs, resume_from_checkpoint, trial
        )
        led = self.epoch_ledger
        if resume_from_checkpoint is not None and led.epoch_starts:
            epoch = len(led.epoch_starts) - 1
            done = self.state.global_step - led.epoch_starts[epoch]
            if done >= led.epoch_updates[epoch]:  # the epoch ended at this checkpoint: start the next one
                epochs, skip = epoch + 1, 0
            else:
                epochs = epoch
                skip = 0 if self.args.ignore_data_skip else done * self.args.gradient_accumulation_steps
        if resume_from_checkpoint is not None and 0 < self.args.max_steps <= self.state.global_step:
            return self._trained_to_the_end(resume_from_checkpoint, num_train_epochs)  # see TrainerInternalsMixin
        if resume_from_checkpoint is not None and self.args.max_steps <= 0 and led.epoch_starts:
            epoch = len(led.epoch_starts) - 1  # the last epoch may be a fraction (num_train_epochs=2.5)
            left = math.ceil((self.args.num_train_epochs - epoch) * led.epoch_updates[epoch])
            if self.state.global_step - led.epoch_starts[epoch] >= left:
                return self._trained_to_the_end(resume_from_checkpoint, num_train_epochs)
        return epochs, skip

    def _run_epoch(self, model, epoch, train_dataloader, steps_in_epoch, num_update_steps_per_epoch, *args, **kwargs):
        steps_in_epoch = len(train_dataloader)  # the training set as it is now (rows may have been added)
        ga = self.args.gradient_accumulation_steps
        num_update_steps_per_epoch = max(1, math.ceil(steps_in_epoch / ga))
        self.epoch_starting(epoch)
        led = self.epoch_ledger
        if len(led.epoch_starts) <= epoch:
            led.epoch_starts.append(self.state.global_step)
            led.epoch_updates.append(num_update_steps_per_epoch)
        if self.args.max_steps <= 0:
            left = math.ceil((self.args.num_train_epochs - epoch) * num_update_steps_per_epoch)
            total = led.epoch_starts[epoch] + left
            self.state.max_steps = total
            stretch_schedule(self.lr_scheduler, total)
        return super()._run_epoch(
            model, epoch, train_dataloader, steps_in_epoch, num_update_steps_per_epoch, *args, **kwargs
        )
