"""Blotching: drop whole solution steps from training rows, in the collator (:class:`BlotchCollator`).

The contiguous dropout of grantsrb/blotching (its ``utils.py`` masks), done by *excision*: a dropped step is
removed from the row with its ``=`` and the batch compacted, so it is neither attended to nor predicted; the
problem and the final answer always stay, and ``position_ids`` come with the batch. The per-row blotch
probability, blotch tokens and the spacing of drops follow the original's options.

Design: `docs/semantic_blotching.md`, section "Blotching".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from hf_experiments.core.packing import pack_batch

IGNORE_INDEX = -100


def blotch_levels(n_btokens: int, p_min: float, p_max: float) -> torch.Tensor:
    """The blotch probability of each blotch token: ``n_btokens`` evenly spaced values on [p_min, p_max]."""
    if n_btokens < 1:
        raise ValueError(f"n_btokens={n_btokens} is not allowed here; use n_btokens >= 1")
    if n_btokens == 1:
        return torch.tensor([float(p_max)])
    return torch.linspace(float(p_min), float(p_max), n_btokens, dtype=torch.float64).float()


def default_n_btokens(p_min: float, p_max: float) -> int:
    """One level per 0.1 of the range, both ends included (0.0..0.4 -> 5 levels: 0, .1, .2, .3, .4)."""
    return max(1, round((p_max - p_min) / 0.1) + 1)


def level_of(p: float, n_btokens: int, p_min: float, p_max: float) -> int:
    """The blotch token whose level is closest to ``p`` (generation: the user picks a blotch level)."""
    return int((blotch_levels(n_btokens, p_min, p_max) - float(p)).abs().argmin())


def pad_rows(rows: Sequence[Sequence[int] | torch.Tensor], pad_id: int) -> torch.Tensor:
    """Variable-length id rows -> (B, T) right-padded LongTensor."""
    tensors = [torch.as_tensor(r, dtype=torch.long) for r in rows]
    return torch.nn.utils.rnn.pad_sequence(tensors, batch_first=True, padding_value=pad_id)


def step_segments(ids: torch.Tensor, eq_id: int, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Segment index of every token (B, T) (-1 on padding) and the answer segment K of each row (B,)."""
    real = ids != pad_id  # (B, T)
    seg = torch.cumsum(ids == eq_id, dim=1)  # (B, T): '=' opens a new segment
    n_eq = seg[:, -1] if ids.shape[1] else torch.zeros(len(ids), dtype=torch.long)
    return torch.where(real, seg, -1), n_eq


def sample_drops(
    n_eq: torch.Tensor,
    p: torch.Tensor,
    spacing: Literal["random", "even"] = "random",
    contig_blotches: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Which segments to drop, (B, S) bool with S = max K + 1; only steps 1..K-1 can be True."""
    b = len(n_eq)
    s = int(n_eq.max()) + 1 if b else 1
    col = torch.arange(s)[None]  # (1, S)
    droppable = (col >= 1) & (col < n_eq[:, None])  # (B, S)
    p = p.to(torch.float64)[:, None]  # (B, 1)
    if spacing == "random":
        drop = (torch.rand(b, s, generator=generator, dtype=torch.float64) < p) & droppable
    elif spacing == "even":
        m = (n_eq - 1).clamp(min=0)[:, None]  # (B, 1) droppable steps
        expected = p * m
        k = torch.floor(expected + torch.rand(b, 1, generator=generator, dtype=torch.float64)).long()
        k = torch.minimum(k, m)
        if not contig_blotches:
            k = torch.minimum(k, (m + 1) // 2)
        j = col  # (1, S): j-th drop of the row
        spread = (m - 1).double() / (k - 1).clamp(min=1).double()  # (B, 1)
        first = torch.floor(torch.rand(b, 1, generator=generator, dtype=torch.float64) * m).long()
        pos = torch.where(k > 1, torch.round(j * spread).long(), first) + 1  # (B, S) 1-based step
        drop = torch.zeros(b, s + 1, dtype=torch.bool)
        drop.scatter_(1, torch.where(j < k, pos, s).clamp(max=s), True)  # column s is a sink
        drop = drop[:, :s] & droppable
    else:
        raise ValueError(f"spacing={spacing!r} is not allowed; use 'random' or 'even'")
    if not contig_blotches:
        for c in range(2, s):  # sequential over steps (a dozen), vectorised over the batch
            drop[:, c] &= ~drop[:, c - 1]
    return drop


def excise(
    ids: torch.Tensor,
    drop: torch.Tensor,
    eq_id: int,
    pad_id: int,
    pad_pos_skip: bool = True,
    incl_intl_prob: bool = False,
    prefix: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Remove the dropped segments from (B, T) right-padded rows; returns the model inputs.

    ``prefix`` (B,) prepends one token per row (the blotch token), not predicted. Labels cover the solution
    (everything after the first ``=``); the problem and that ``=`` are the prompt, labelled only with
    ``incl_intl_prob``.
    """
    seg, _ = step_segments(ids, eq_id, pad_id)
    drop_tok = drop.gather(1, seg.clamp(min=0)) & (seg >= 0)  # (B, T)
    keep = (seg >= 0) & ~drop_tok
    lengths = keep.sum(1)  # (B,)
    t_new = int(lengths.max()) if len(ids) else 0
    order = torch.sort((~keep).to(torch.int8), dim=1, stable=True).indices[:, :t_new]  # kept tokens first
    out_ids = ids.gather(1, order)  # (B, T')
    valid = torch.arange(t_new)[None] < lengths[:, None]  # (B, T')
    out_ids = torch.where(valid, out_ids, pad_id)
    positions = torch.arange(t_new).expand(len(ids), -1) if pad_pos_skip else order
    positions = torch.where(valid, positions, 0)
    after_prompt = torch.cumsum(out_ids == eq_id, dim=1) - (out_ids == eq_id).long() > 0  # past the 1st '='
    labels = torch.where(valid & (after_prompt | incl_intl_prob), out_ids, IGNORE_INDEX)
    if incl_intl_prob:
        labels[:, 0] = IGNORE_INDEX  # BOS is never a target
    attention = valid.long()
    if prefix is not None:
        ones = torch.ones(len(ids), 1, dtype=torch.long)
        out_ids = torch.cat([prefix[:, None].long(), out_ids], 1)
        positions = torch.cat([0 * ones, torch.where(valid, positions + 1, 0)], 1)
        labels = torch.cat([IGNORE_INDEX * ones, labels], 1)
        attention = torch.cat([ones, attention], 1)
    return {"input_ids": out_ids, "attention_mask": attention, "position_ids": positions, "labels": labels}


@dataclass
class BlotchCollator:
    """Pads ``input_ids`` rows, blotches them and returns ``input_ids/attention_mask/position_ids/labels``.

    ``btoken_offset`` is the id of blotch token 0 (the tokenizer's vocabulary size); level ``i`` uses
    ``btoken_offset + i``. Randomness comes from ``generator`` or torch's global RNG (which the Trainer
    seeds and checkpoints). ``pack`` lays the blotched rows end to end in fewer rows (`core.packing`; the
    model attends within each row's segment), after blotching, so blotching sees the same rows either way.
    """

    pad_id: int
    eq_id: int
    blotch_p: float = 0.0
    blotch_p_min: float | None = None
    blotch_p_max: float | None = None
    n_btokens: int = 0
    btoken_offset: int = 0
    spacing: Literal["random", "even"] = "random"
    contig_blotches: bool = True
    pad_pos_skip: bool = True
    incl_intl_prob: bool = False
    pack: bool = False
    generator: torch.Generator | None = None

    def __post_init__(self) -> None:
        for name in ("blotch_p", "blotch_p_min", "blotch_p_max"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name}={value} is not allowed; use a probability in [0, 1]")
        if self.n_btokens and (self.blotch_p_min is None or self.blotch_p_max is None):
            raise ValueError(f"n_btokens={self.n_btokens} needs blotch_p_min and blotch_p_max")
        if self.spacing not in ("random", "even"):
            raise ValueError(f"spacing={self.spacing!r} is not allowed; use 'random' or 'even'")

    def sample_p(self, b: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-row blotch probability (B,) and, with blotch tokens, the level index (B,)."""
        if self.n_btokens:
            level = torch.randint(self.n_btokens, (b,), generator=self.generator)
            return blotch_levels(self.n_btokens, self.blotch_p_min, self.blotch_p_max)[level], level
        lo, hi = self.blotch_p_min, self.blotch_p_max
        if lo is not None and hi is not None and hi > lo:
            return lo + (hi - lo) * torch.rand(b, generator=self.generator), None
        return torch.full((b,), float(self.blotch_p)), None

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        ids = pad_rows([f["input_ids"] for f in features], self.pad_id)  # (B, T)
        p, level = self.sample_p(len(ids))
        _, n_eq = step_segments(ids, self.eq_id, self.pad_id)
        drop = sample_drops(n_eq, p, self.spacing, self.contig_blotches, self.generator)
        prefix = None if level is None else level + self.btoken_offset
        batch = excise(ids, drop, self.eq_id, self.pad_id, self.pad_pos_skip, self.incl_intl_prob, prefix)
        return pack_batch(batch, self.pad_id) if self.pack else batch
