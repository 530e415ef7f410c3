"""Automatic micro-batching: `per_device_batch_size` caps the rows one forward pass takes on one device.

The seed framework's `-per_device_batch_size N`: each update batch is split into `ceil(batch / N)` micro-batches
whose sizes differ by at most one (10 rows, N=4 -> 4, 3, 3), and the accumulated update equals the whole batch's.
`plan_gradient_accumulation`, `MicrobatchSampler` (over `RandomBatches` or `bucketing.LengthBucketedBatches`) and
`MicrobatchingMixin` plug this into `Trainer`, which only knows equal micro-batches.

Design: `docs/framework.md`, section "Micro-batching".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sized
from functools import partial
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from .packing import SEGMENTS_KEY
from .trainer_internals import (
    collator_without_unused_columns,
    loss_is_scaled_for_accumulation,
    micro_batches_in_this_update,
    remove_unused_columns,
)


def microbatch_sizes(batch_size: int, per_device_batch_size: int | None) -> list[int]:
    """Sizes of the micro-batches one update batch is split into: as few as the cap allows, near-equal.

    >>> microbatch_sizes(10, 4)
    [4, 3, 3]
    """
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} is not allowed; use an integer >= 1")
    if per_device_batch_size is None or per_device_batch_size >= batch_size:
        return [batch_size]
    if per_device_batch_size < 1:
        raise ValueError(f"per_device_batch_size={per_device_batch_size} is not allowed; use an integer >= 1")
    n = math.ceil(batch_size / per_device_batch_size)
    base, extra = divmod(batch_size, n)
    return [base + 1] * extra + [base] * (n - extra)


def plan_gradient_accumulation(
    batch_size: int, per_device_batch_size: int | None, gradient_accumulation_steps: int = 1
) -> int:
    """The `gradient_accumulation_steps` that `per_device_batch_size` implies (the two are exclusive)."""
    if per_device_batch_size is None:
        return gradient_accumulation_steps
    if gradient_accumulation_steps != 1:
        raise ValueError(
            f"gradient_accumulation_steps={gradient_accumulation_steps} cannot be combined with "
            f"per_device_batch_size={per_device_batch_size}; set one of them (the seed's "
            "n_microbatch and per_device_batch_size are likewise exclusive)"
        )
    return len(microbatch_sizes(batch_size, per_device_batch_size))


class UpdateBatches(Protocol):
    """Yields the index lists of whole update batches (all ranks together); reshuffles with `set_epoch`."""

    def set_epoch(self, epoch: int) -> None: ...

    def __iter__(self) -> Iterator[np.ndarray]: ...

    def __len__(self) -> int: ...


class RandomBatches:
    """Update batches of `batch_size` rows from a permutation of the rows; the last incomplete one is dropped.

    `rows` is a row count or a sized object (the dataset itself), whose length is read at the start of each
    epoch. The order is a function of `(seed, epoch, n_rows)` only, so every rank draws the same batches and a
    resumed run (which skips the batches already seen) continues with the same order.
    """

    def __init__(self, rows: int | Sized, batch_size: int, seed: int = 0) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} is not allowed; use an integer >= 1")
        self.rows, self.batch_size, self.seed, self.epoch = rows, batch_size, seed, 0
        self.n_rows()  # fail early on a set smaller than one batch

    def n_rows(self) -> int:
        n = self.rows if isinstance(self.rows, int) else len(self.rows)
        if n < self.batch_size:
            raise ValueError(f"the training set has {n} rows, fewer than one update batch of {self.batch_size}")
        return n

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[np.ndarray]:
        n = self.n_rows()
        n_batches = n // self.batch_size
        order = np.random.default_rng([self.seed, self.epoch]).permutation(n)[: n_batches * self.batch_size]
        yield from order.reshape(n_batches, self.batch_size)  # (n_batches, batch)

    def __len__(self) -> int:
        return self.n_rows() // self.batch_size


LengthSource = np.ndarray | Callable[[], np.ndarray]


def _read_lengths(lengths: LengthSource | None) -> np.ndarray | None:
    return lengths() if callable(lengths) else lengths


class MicrobatchSampler(Sampler[list[int]]):
    """Batch sampler for a `DataLoader`: each update batch -> this rank's rows -> micro-batches of `sizes`.

    A rank takes every `world_size`-th row of the global update batch (so with length bucketing every rank
    gets similar lengths). With `lengths` (an array, or a function returning one, called once per epoch), its
    rows are sorted by length before splitting, so each micro-batch pads as little as possible.
    """

    batch_size = None  # micro-batches vary in size: tells accelerate not to drop "short" ones
    drop_last = True

    def __init__(
        self,
        batches: UpdateBatches,
        sizes: list[int],
        rank: int = 0,
        world_size: int = 1,
        lengths: LengthSource | None = None,
    ) -> None:
        super().__init__()
        if batches.batch_size != sum(sizes) * world_size:
            raise ValueError(
                f"update batches of {batches.batch_size} rows do not split into {world_size} ranks x "
                f"micro-batches {sizes}"
            )
        self.batches, self.sizes, self.rank, self.world_size = batches, list(sizes), rank, world_size
        self.lengths = lengths if lengths is None or callable(lengths) else np.asarray(lengths)
        self._cuts = np.cumsum(self.sizes)[:-1]

    def set_epoch(self, epoch: int) -> None:
        self.batches.set_epoch(epoch)

    @property
    def sampler(self) -> UpdateBatches:
        """The update batches (reshuffled by `set_epoch`): accelerate's `DataLoaderShard.set_epoch` reaches them
        through `batch_sampler.sampler`, also once a resume wraps this sampler to skip batches."""
        return self.batches

    def __iter__(self) -> Iterator[list[int]]:
        lengths = _read_lengths(self.lengths)  # this epoch's rows
        for batch in self.batches:
            rows = np.asarray(batch)[self.rank :: self.world_size]
            if lengths is not None:
                rows = rows[np.argsort(-lengths[rows], kind="stable")]
            for micro in np.split(rows, self._cuts):
                yield micro.tolist()

    def __len__(self) -> int:
        return len(self.batches) * len(self.sizes)


class MicrobatchingMixin:
    """Mixin for a `Trainer` subclass (put it first; `ExperimentTrainer` has it): micro-batched, optionally
    length-bucketed training batches.

    Reads `args.per_device_batch_size` (None = off) and `args.length_bucketed_sampling` (bool); with both off
    the Trainer's own dataloader and loss are used unchanged. `args.gradient_accumulation_steps` must already
    equal the number of micro-batches (`plan_gradient_accumulation`, done by `ExperimentTrainingArguments`).
    The sampler holds the training dataset itself and reads its size and lengths at the start of every epoch.
    """

    def _uses_update_batches(self) -> bool:
        return getattr(self.args, "per_device_batch_size", None) is not None or bool(
            getattr(self.args, "length_bucketed_sampling", False)
        )

    def _microbatch_sizes(self) -> list[int]:
        return microbatch_sizes(
            self.args.per_device_train_batch_size, getattr(self.args, "per_device_batch_size", None)
        )

    def build_train_batch_sampler(self, dataset: Any) -> MicrobatchSampler:
        """The batch sampler of the training dataloader (see `MicrobatchSampler`). `dataset` is the training
        set with all its columns (the lengths may live in a column the model does not take)."""
        from .bucketing import LengthBucketedBatches, dataset_lengths

        args = self.args
        sizes = self._microbatch_sizes()
        global_batch = sum(sizes) * args.world_size
        seed = args.data_seed if args.data_seed is not None else args.seed
        lengths = None
        if getattr(args, "length_bucketed_sampling", False):
            lengths = partial(dataset_lengths, dataset, args.length_column_name)
            batches = LengthBucketedBatches(lengths, global_batch, seed=seed)
        else:
            batches = RandomBatches(dataset, global_batch, seed=seed)
        return MicrobatchSampler(batches, sizes, rank=args.process_index, world_size=args.world_size, lengths=lengths)

    def get_train_dataloader(self) -> DataLoader:
        if not self._uses_update_batches():
            return super().get_train_dataloader()
        if self.train_dataset is None:
            raise ValueError("Trainer: training requires a train_dataset.")
        import datasets
        from accelerate.data_loader import prepare_data_loader
        from transformers.trainer_utils import seed_worker

        args = self.args
        sampler = self.build_train_batch_sampler(self.train_dataset)
        dataset, collator = self.train_dataset, self.data_collator
        if isinstance(dataset, datasets.Dataset):
            dataset = remove_unused_columns(self, dataset, "Training")
        else:  # e.g. a mutable cache: keep the object (its updates must reach the loader), filter in collation
            collator = collator_without_unused_columns(self, collator, "Training")
        loader = DataLoader(
            dataset,
            batch_sampler=sampler,
            collate_fn=collator,
            num_workers=args.dataloader_num_workers,
            pin_memory=args.dataloader_pin_memory,
            persistent_workers=args.dataloader_persistent_workers,
            multiprocessing_context=args.dataloader_multiprocessing_context,
            prefetch_factor=args.dataloader_prefetch_factor,
            in_order=args.dataloader_in_order,
            worker_init_fn=partial(seed_worker, num_workers=args.dataloader_num_workers, rank=args.process_index),
        )
        # The sampler already yields this rank's rows, so the loader is prepared as for one process: accelerate's
        # device placement and batch skipping on resume, without the shard that would deal its batches out
        # across the ranks a second time.
        acc = self.accelerator
        return prepare_data_loader(
            loader,
            acc.device,
            num_processes=1,
            process_index=0,
            split_batches=acc.split_batches,
            put_on_device=acc.device_placement,
            rng_types=acc.rng_types.copy(),
            dispatch_batches=acc.dispatch_batches,
            even_batches=acc.even_batches,
            use_seedable_sampler=acc.use_seedable_sampler,
            data_seed=acc.dataloader_config.data_seed,
            non_blocking=acc.non_blocking,
            use_stateful_dataloader=acc.use_stateful_dataloader,
        )

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> Any:
        result = super().compute_loss(
            model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
        )
        if (
            not model.training
            or getattr(self.args, "per_device_batch_size", None) is None
            or loss_is_scaled_for_accumulation(self, num_items_in_batch)
        ):
            return result
        # A mean loss: weigh this micro-batch by its rows; Trainer then divides by the number of
        # micro-batches.
        if SEGMENTS_KEY in inputs:  # packed rows (core/packing.py) are not the batch's rows
            raise ValueError(
                "per_device_batch_size with packed rows needs a model whose loss takes num_items_in_batch "
                "(a summed loss); this model returns a mean, which packed rows cannot weigh"
            )
        rows = next(v for v in inputs.values() if isinstance(v, torch.Tensor)).shape[0]
        factor = rows * micro_batches_in_this_update(self) / self.args.per_device_train_batch_size
        if return_outputs:
            loss, outputs = result
            return loss * factor, outputs
        return result * factor
