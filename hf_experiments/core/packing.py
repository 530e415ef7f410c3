"""Padding-free packing: the rows of a right-padded batch placed end to end in fewer rows of the same length.

A batch of blotched arithmetic rows is about a third padding; packing puts several short rows into one row of
the batch's length (best-fit decreasing), so the model computes on fewer padding tokens. Each packed row carries
`packed_segments`, the 1-based index of the original row every token came from (0 on the remaining padding):
a model that accepts it attends only within a segment (the blotch model builds that mask), so the packed
forward equals the padded one token for token, and the loss (a sum over the same labels divided by the same
label count) is the same number; `tests/blotch/test_packing.py` checks both.

Why not `DataCollatorWithFlattening`: it makes one long row and lets transformers find the row boundaries
from position resets; blotched rows can skip positions (`pad_pos_skip=false`), and on CPU the SDPA path then
builds a dense (T_total x T_total) mask, 3x slower than padding (issue 19's measurement). Rows of the batch's
own length keep the attention cost per row at T x T.

Only for models that read `packed_segments` (`supports_packed_segments = True`, e.g. the blotch model): any other
model ignores the key and would attend across rows.

Design: `docs/framework.md`, section "Padding-free packing".
"""

from __future__ import annotations

import bisect

import torch

SEGMENTS_KEY = "packed_segments"


def best_fit_decreasing(lengths: list[int], capacity: int) -> list[list[int]]:
    """Row indices grouped into bins of total length <= `capacity`: longest row first, each into the fullest bin
    that still has room (bisect over the sorted free space); deterministic."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    bins: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (free space, bin index), sorted
    for i in order:
        n = lengths[i]
        at = bisect.bisect_left(free, (n, -1))
        if at < len(free):
            space, b = free.pop(at)
        else:
            space, b = capacity, len(bins)
            bins.append([])
        bins[b].append(i)
        if space - n > 0:
            bisect.insort(free, (space - n, b))
    return bins


def pack_batch(batch: dict[str, torch.Tensor], pad_id: int) -> dict[str, torch.Tensor]:
    """Pack the right-padded rows of `batch` (every value (B, T); `attention_mask` marks the real tokens).

    Returns the same keys with (R, T) values, R <= B, rows laid end to end in best-fit-decreasing bins, plus
    `packed_segments` (R, T). Position ids and labels travel with their tokens, so a row keeps its own
    positions; the label of a segment's first token is never a target of the previous segment because that
    first token (BOS or a blotch token) is unlabelled in every batch this module packs (checked).
    """
    mask = batch["attention_mask"].bool()
    b, t = mask.shape
    lengths = mask.sum(1)
    if b and bool((mask != (torch.arange(t)[None] < lengths[:, None])).any()):
        raise ValueError("pack_batch needs right-padded rows (attention_mask a prefix of ones in every row)")
    if "labels" in batch and b and bool((batch["labels"][:, 0] != -100).any()):
        raise ValueError(
            "pack_batch needs unlabelled first tokens (labels[:, 0] == -100), or rows would be trained "
            "to predict the next row's first token"
        )
    n = lengths.tolist()
    bins = best_fit_decreasing(n, t)
    r = len(bins)
    meta = [[0, 0, 0] for _ in range(b)]  # per row: bin, offset in it, 1-based segment (Python lists: fast)
    for k, members in enumerate(bins):
        offset = 0
        for j, i in enumerate(members):
            meta[i] = [k, offset, j + 1]
            offset += n[i]
    row_bin, row_offset, row_segment = torch.tensor(meta, dtype=torch.long).reshape(b, 3).unbind(1)
    src_row, src_col = mask.nonzero(as_tuple=True)  # every real token, row-major
    dest = row_bin[src_row] * t + row_offset[src_row] + src_col  # (N,) flat index in the packed (R, T)
    out: dict[str, torch.Tensor] = {}
    for key, value in batch.items():
        fill = {"input_ids": pad_id, "labels": -100}.get(key, 0)  # masks and positions pad with 0
        packed = torch.full((r * t,), fill, dtype=value.dtype)
        packed[dest] = value[src_row, src_col]
        out[key] = packed.view(r, t)
    segments = torch.zeros(r * t, dtype=torch.long)
    segments[dest] = row_segment[src_row]
    out[SEGMENTS_KEY] = segments.view(r, t)
    return out


__all__ = ["SEGMENTS_KEY", "best_fit_decreasing", "pack_batch"]
