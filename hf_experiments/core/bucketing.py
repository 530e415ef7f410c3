"""Length-bucketed update batches: rows of similar length share a batch, so little compute goes to padding.

The seed framework's `-length_bucketed_sampling 1`. Like transformers' `LengthGroupedSampler` (megabatches of
50 batches, each sorted by length), but vectorised, and producing *update batches* instead of a row order, so
that it composes with `per_device_batch_size` micro-batching and several ranks (`microbatch.MicrobatchSampler`).
Lengths are read at the start of every epoch.

Design: `docs/framework.md`, section "Length bucketing".
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np


def dataset_lengths(dataset: Any, column: str = "length", input_column: str = "input_ids") -> np.ndarray:
    """Row lengths of a training set: its `column` if present, else the lengths of its `input_column` lists.

    A `datasets.Dataset` is read from Arrow (no per-row Python); any other dataset may offer a `row_lengths()`
    method (as `data_cache.CacheView` does), else its rows are read one by one (per row, not per token).
    """
    names = getattr(dataset, "column_names", None)
    if names is not None and hasattr(dataset, "with_format"):
        if column in names:
            return np.asarray(dataset.with_format("numpy")[column], dtype=np.int64)
        if input_column not in names:
            raise ValueError(
                f"length_bucketed_sampling needs a {column!r} or {input_column!r} column; the dataset has {names}"
            )
        import pyarrow.compute as pc

        return pc.list_value_length(dataset.with_format("arrow")[input_column]).to_numpy().astype(np.int64)
    if callable(getattr(dataset, "row_lengths", None)):
        return np.asarray(dataset.row_lengths(), dtype=np.int64)
    rows = (dataset[i] for i in range(len(dataset)))
    try:
        return np.fromiter(
            (r[column] if column in r else len(r[input_column]) for r in rows), np.int64, count=len(dataset)
        )
    except (KeyError, TypeError):
        raise ValueError(
            f"length_bucketed_sampling needs rows with a {column!r} or {input_column!r} field, or a dataset "
            "with a row_lengths() method"
        ) from None


class LengthBucketedBatches:
    """Update batches of `batch_size` rows of similar length, in random order (see module docstring).

    `lengths`: the row lengths, or a function returning them (called at the start of every epoch, so the
    training set may change between epochs). Each epoch: a permutation of all rows (seeded by
    `(seed, epoch)`) is cut into megabatches of `megabatch_batches * batch_size` rows; each megabatch is sorted
    by length and cut into batches; all batches are shuffled. Rows left over after the last complete batch are
    dropped (a different set every epoch).
    """

    def __init__(
        self,
        lengths: np.ndarray | Callable[[], np.ndarray],
        batch_size: int,
        seed: int = 0,
        megabatch_batches: int = 50,
    ) -> None:
        if megabatch_batches < 1:
            raise ValueError(f"megabatch_batches={megabatch_batches} is not allowed; use an integer >= 1")
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} is not allowed; use an integer >= 1")
        self.lengths = lengths if callable(lengths) else np.asarray(lengths, dtype=np.int64)
        self.batch_size, self.seed, self.megabatch_batches, self.epoch = batch_size, seed, megabatch_batches, 0
        self.current_lengths()  # fail early on a set smaller than one batch

    def current_lengths(self) -> np.ndarray:
        """The lengths of the training set as it is now."""
        lengths = np.asarray(self.lengths() if callable(self.lengths) else self.lengths, dtype=np.int64)
        if len(lengths) < self.batch_size:
            raise ValueError(
                f"the training set has {len(lengths)} rows, fewer than one update batch of {self.batch_size}"
            )
        return lengths

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.current_lengths()) // self.batch_size

    def batches(self) -> np.ndarray:
        """This epoch's batches as an `(n_batches, batch_size)` index array."""
        lengths = self.current_lengths()
        rng = np.random.default_rng([self.seed, self.epoch])
        n_batches = len(lengths) // self.batch_size
        order = rng.permutation(len(lengths))[: n_batches * self.batch_size]
        mega = np.arange(len(order)) // (self.megabatch_batches * self.batch_size)  # megabatch of each slot
        # Sort by (megabatch, length): rows stay in their megabatch, sorted by length inside it.
        order = order[np.lexsort((lengths[order], mega))]
        batches = order.reshape(n_batches, self.batch_size)  # (n_batches, batch)
        return batches[rng.permutation(n_batches)]

    def __iter__(self) -> Iterator[np.ndarray]:
        yield from self.batches()


def padding_fraction(batches: np.ndarray | list, lengths: np.ndarray) -> float:
    """Share of the padded tensor that is padding, over batches of row indices (each padded to its longest
    row)."""
    lengths = np.asarray(lengths)
    real = padded = 0
    for b in batches:
        lb = lengths[np.asarray(b)]
        real += int(lb.sum())
        padded += int(lb.max()) * len(lb)
    return 1.0 - real / padded
