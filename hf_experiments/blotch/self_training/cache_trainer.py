"""`CacheTrainerMixin`: a Trainer that trains every epoch on the data cache as it is
at that epoch's start, restores the cache on resume, and writes it into every checkpoint; and the row-seeded
collator that makes blotching a function of the data (exact resumes). Design: `docs/data_cache.md`.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers.trainer_utils import get_last_checkpoint

from .data_cache import CACHE_DIR, ROW_KEY, CacheView, DataCache


@dataclass
class RowSeededCollator:
    """Runs ``inner`` (e.g. the blotch collator, which draws from torch's global RNG) under an RNG seeded by
    ``(seed, epoch, rows of the batch)`` and restored afterwards.

    Why: ``Trainer`` collates batches ahead of the step that uses them (accelerate prefetches one batch, and
    on resume the first batches are collated before the checkpoint's RNG state is loaded), so a collator
    drawing from the global stream would blotch differently after a resume, and with workers it draws from
    the workers' streams. Seeding by row makes blotching a function of the data alone: exact resumes, any
    number of workers. Features without ``cache_row`` (evaluation) go to ``inner`` unchanged.
    """

    inner: Any
    seed: int = 0

    def __call__(self, features: list[dict[str, Any]]) -> Any:
        if not features or ROW_KEY not in features[0]:
            return self.inner(features)
        keys = [f[ROW_KEY] for f in features]
        features = [{k: v for k, v in f.items() if k != ROW_KEY} for f in features]
        seed = np.random.SeedSequence([self.seed, int(keys[0][0]), *(int(k[1]) for k in keys)])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed.generate_state(1, np.uint64)[0] >> np.uint64(1)))
            return self.inner(features)


def _stretch_schedule(scheduler: Any, total: int) -> None:
    """Set the horizon of a ``transformers`` LambdaLR schedule (``partial(..., num_training_steps=N)``)."""
    lambdas = getattr(scheduler, "lr_lambdas", None) or []
    for i, fn in enumerate(lambdas):
        if isinstance(fn, partial) and "num_training_steps" in fn.keywords:
            lambdas[i] = partial(fn.func, *fn.args, **{**fn.keywords, "num_training_steps": total})


class CacheTrainerMixin:
    """Put before the ``Trainer`` subclass: trains every epoch on the current :class:`DataCache` (module
    docstring). Needs ``self.data_cache`` set (``attach_cache``) before ``train``."""

    data_cache: DataCache

    def attach_cache(self, cache: DataCache) -> None:
        if self.args.dataloader_persistent_workers and self.args.dataloader_num_workers > 0:
            raise ValueError("dataloader_persistent_workers=True is not allowed with a data cache: persistent "
                             "workers keep the first epoch's copy of the rows; use false")
        self.data_cache = cache
        self.train_dataset = CacheView(cache)
        if not isinstance(self.data_collator, RowSeededCollator):
            seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
            self.data_collator = RowSeededCollator(self.data_collator, seed)

    def _get_collator_with_removed_columns(self, data_collator: Any, description: str | None = None) -> Any:
        # The column filter must run inside the seeding wrapper: it would drop ``cache_row``.
        if isinstance(data_collator, RowSeededCollator):
            inner = super()._get_collator_with_removed_columns(data_collator.inner, description)
            return RowSeededCollator(inner, data_collator.seed)
        return super()._get_collator_with_removed_columns(data_collator, description)

    # ----- checkpoints -----
    def train(self, resume_from_checkpoint: str | bool | None = None, *args: Any, **kwargs: Any):
        if resume_from_checkpoint is True:
            resume_from_checkpoint = get_last_checkpoint(self.args.output_dir)
        if resume_from_checkpoint:
            saved = Path(resume_from_checkpoint) / CACHE_DIR
            if not saved.is_dir():
                raise ValueError(f"resume_from_checkpoint={str(resume_from_checkpoint)!r} has no {CACHE_DIR}/: it "
                                 "was not written by a data-cache run, so the cache cannot be restored")
            self.data_cache.load(saved)
        return super().train(resume_from_checkpoint, *args, **kwargs)

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        # Written first: the checkpoint is complete only once ExperimentTrainer marks it, after everything.
        if self.args.should_save:
            run_dir = self._get_output_dir(trial=trial)
            self.data_cache.save(Path(run_dir) / f"checkpoint-{self.state.global_step}" / CACHE_DIR)
        super()._save_checkpoint(model, trial)

    # ----- epoch bookkeeping -----
    def set_initial_training_values(self, args: Any, dataloader: Any):
        values = list(super().set_initial_training_values(args, dataloader))
        if args.max_steps > 0:
            values[0] = sys.maxsize  # epochs end when max_steps is reached, however long each one is
        elif self.data_cache.ledger.epoch_updates:
            # Resuming: plan (and build the LR schedule) as the first epoch did; `_run_epoch` re-plans.
            values[6] = math.ceil(args.num_train_epochs * self.data_cache.ledger.epoch_updates[0])
        return tuple(values)

    def _init_training_state(self, max_steps, num_update_steps_per_epoch, num_train_epochs,
                             resume_from_checkpoint, trial):
        epochs, skip = super()._init_training_state(max_steps, num_update_steps_per_epoch, num_train_epochs,
                                                    resume_from_checkpoint, trial)
        led = self.data_cache.ledger
        if resume_from_checkpoint is not None and led.epoch_starts:
            epoch = len(led.epoch_starts) - 1
            done = self.state.global_step - led.epoch_starts[epoch]
            if done >= led.epoch_updates[epoch]:  # the epoch ended at this checkpoint: start the next one
                epochs, skip = epoch + 1, 0
            else:
                epochs = epoch
                skip = 0 if self.args.ignore_data_skip else done * self.args.gradient_accumulation_steps
        return epochs, skip

    def _run_epoch(self, model, epoch, train_dataloader, steps_in_epoch, num_update_steps_per_epoch, *args,
                   **kwargs):
        steps_in_epoch = len(train_dataloader)  # the cache as it is now (rows may have been added)
        ga = self.args.gradient_accumulation_steps
        num_update_steps_per_epoch = max(1, math.ceil(steps_in_epoch / ga))
        self.train_dataset.epoch = epoch  # before the epoch's iterator (and its workers) start
        led = self.data_cache.ledger
        if len(led.epoch_starts) <= epoch:
            led.epoch_starts.append(self.state.global_step)
            led.epoch_updates.append(num_update_steps_per_epoch)
        if self.args.max_steps <= 0:
            left = math.ceil((self.args.num_train_epochs - epoch) * num_update_steps_per_epoch)
            total = led.epoch_starts[epoch] + left
            self.state.max_steps = total
            _stretch_schedule(self.lr_scheduler, total)
        return super()._run_epoch(model, epoch, train_dataloader, steps_in_epoch, num_update_steps_per_epoch,
                                  *args, **kwargs)
