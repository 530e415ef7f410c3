"""`CacheTrainerMixin`: a Trainer that trains every epoch on the data cache as it is at that epoch's start
(`core.trainer_internals.GrowingEpochsMixin` keeps the epoch bookkeeping right), restores the cache on resume and
writes it into every checkpoint before the checkpoint is marked complete (`write_checkpoint_extras`); and the
row-seeded collator that makes blotching a function of the data (exact resumes, any number of workers).
Design: `docs/data_cache.md`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers.trainer_utils import get_last_checkpoint

from hf_experiments.core.trainer_internals import GrowingEpochsMixin

from .data_cache import CACHE_DIR, ROW_KEY, CacheView, DataCache, Ledger


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

    def rewrap(self, inner: Any) -> RowSeededCollator:
        """The same seeding around another inner collator: the Trainer's column filter goes inside, where
        ``cache_row`` is already removed (`core.trainer_internals.TrainerInternalsMixin`)."""
        return RowSeededCollator(inner, self.seed)


class CacheTrainerMixin(GrowingEpochsMixin):
    """Put before the ``Trainer`` subclass: trains every epoch on the current :class:`DataCache` (module
    docstring). Needs ``attach_cache`` before ``train``."""

    data_cache: DataCache

    def attach_cache(self, cache: DataCache) -> None:
        if self.args.dataloader_persistent_workers and self.args.dataloader_num_workers > 0:
            raise ValueError(
                "dataloader_persistent_workers=True is not allowed with a data cache: persistent "
                "workers keep the first epoch's copy of the rows; use false"
            )
        self.data_cache = cache
        self.train_dataset = CacheView(cache)
        if not isinstance(self.data_collator, RowSeededCollator):
            seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
            self.data_collator = RowSeededCollator(self.data_collator, seed)

    def write_checkpoint_extras(self, folder: Path) -> None:
        """The cache (rows and ledger) in every checkpoint, the preemption one included, before its marker."""
        self.data_cache.save(folder / CACHE_DIR)
        super().write_checkpoint_extras(folder)

    @property
    def epoch_ledger(self) -> Ledger:
        return self.data_cache.ledger

    def epoch_starting(self, epoch: int) -> None:
        self.train_dataset.epoch = epoch  # before the epoch's iterator (and its workers) start

    def train(self, resume_from_checkpoint: str | bool | None = None, *args: Any, **kwargs: Any):
        if resume_from_checkpoint is True:
            resume_from_checkpoint = get_last_checkpoint(self.args.output_dir)
        if resume_from_checkpoint:
            saved = Path(resume_from_checkpoint) / CACHE_DIR
            if not saved.is_dir():
                raise ValueError(
                    f"resume_from_checkpoint={str(resume_from_checkpoint)!r} has no {CACHE_DIR}/: it "
                    "was not written by a data-cache run, so the cache cannot be restored"
                )
            self.data_cache.load(saved)  # before the dataloader is measured
        return super().train(resume_from_checkpoint, *args, **kwargs)
