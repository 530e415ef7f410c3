"""Repeat-sequence data of the recurrent storage experiments (as in RobertCsordas/onion_representations).

A sample is a sequence of `min_len..max_len` symbols out of `n_symbols` that the model must repeat; the samples
of a split are unique. Validation sequences never occur in training: every sequence has a 64-bit key, and a
fixed `heldout_fraction` of the key space is reserved for validation (instead of the original's exclude lists).
Each sequence is held out with that probability, so a length with few possible sequences gets a share scattered
around it (3 symbols, length 2: 4 of 9 = 44%), where the original capped validation at 20% per length.
Extra validation sets hold longer sequences and sequences without repeated symbols. Generation is vectorised.

Design: `docs/recurrent_storage.md`, section "Data".
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from hf_experiments.core.dataset_io import _splitmix64, heldout_mask, write_dataset
from hf_experiments.core.progress import progress_bar

PAD = -1  # in padded arrays only; never stored
_KEY_SALT = 0x5EED_0F_5E0  # fixed: held-out membership must not depend on any seed
_MAX_ROUND = 500_000  # candidates per rejection round (bounds memory without `with_repeats`)


@dataclass(frozen=True)
class RepeatDataSpec:
    """Everything that determines a generated repeat dataset (recorded in its dataset card)."""

    n_symbols: int = 30
    min_len: int = 9
    max_len: int = 9
    with_repeats: bool = True
    n_train: int = 1_000_000
    n_valid: int = 5000
    n_valid_extra: int = 1000
    heldout_fraction: float = 0.2
    seed: int = 0

    def check(self, counts: bool = True) -> None:
        """One clear line per bad value (the data scripts and the experiments share these checks); `counts=False`
        skips whether the requested counts exist (a run reading a given dataset generates nothing)."""
        if self.n_symbols < 2:
            raise ValueError(f"n_symbols={self.n_symbols} is not allowed; use at least 2")
        if not 1 <= self.min_len <= self.max_len:
            raise ValueError(f"min_len={self.min_len}, max_len={self.max_len}: need 1 <= min_len <= max_len")
        if not self.with_repeats and self.max_len > self.n_symbols:
            raise ValueError(
                f"max_len={self.max_len} is not allowed with with_repeats=false: sequences without "
                f"repeated symbols are at most n_symbols={self.n_symbols} long"
            )
        if not 0.0 < self.heldout_fraction < 1.0:
            raise ValueError(f"heldout_fraction={self.heldout_fraction} is not allowed; use a value in (0, 1)")
        for name in ("n_train", "n_valid", "n_valid_extra"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)} is not allowed; use a count >= 0")
        if not counts:
            return
        count_of = {"train": "n_train", "valid": "n_valid"}
        for split, s in split_specs(self).items():
            check_capacity(
                s["n"],
                self.n_symbols,
                *s["lens"],
                s["rep"],
                s["heldout"],
                self.heldout_fraction,
                count_of.get(split, "n_valid_extra"),
            )

    def name(self) -> str:
        """A folder name that identifies the dataset (generated once, shared by runs with the same data)."""
        rep = "" if self.with_repeats else "_norep"
        return (
            f"repeat_s{self.n_symbols}_l{self.min_len}-{self.max_len}{rep}_n{self.n_train}_v{self.n_valid}"
            f"_x{self.n_valid_extra}_h{self.heldout_fraction:g}_seed{self.seed}"
        )


def count_sequences(n_symbols: int, length: int, with_repeats: bool) -> int:
    """How many distinct sequences of `length` exist (with or without repeated symbols)."""
    if with_repeats:
        return n_symbols**length
    return math.perm(n_symbols, length) if length <= n_symbols else 0


def sequence_keys(tokens: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """64-bit key of each padded row `(N, T)`: a hash of its length and its first `length` tokens.

    Loops over the T columns only (vectorised over rows). Distinct sequences collide with probability ~N²/2⁶⁴.
    """
    lengths = np.asarray(lengths)
    h = _splitmix64(lengths.astype(np.uint64) ^ np.uint64(_KEY_SALT))  # (N,)
    for j in range(tokens.shape[1]):
        mixed = _splitmix64(h ^ tokens[:, j].astype(np.uint64))
        h = np.where(j < lengths, mixed, h)
    return h


def _draw(
    rng: np.random.Generator, m: int, n_symbols: int, min_len: int, max_len: int, with_repeats: bool
) -> tuple[np.ndarray, np.ndarray]:
    """m candidate sequences: lengths uniform in [min_len, max_len], padded tokens `(m, max_len)`."""
    lengths = rng.integers(min_len, max_len + 1, size=m)
    if with_repeats:
        tokens = rng.integers(0, n_symbols, size=(m, max_len))
    else:  # the first max_len entries of a random permutation of the symbols
        tokens = np.argsort(rng.random((m, n_symbols)), axis=1)[:, :max_len]
    tokens = np.where(np.arange(max_len) < lengths[:, None], tokens, PAD).astype(np.int32)
    return tokens, lengths.astype(np.int32)


def _in_sorted(keys: np.ndarray, sorted_keys: np.ndarray) -> np.ndarray:
    """Membership by binary search (numpy's hash-based `isin`/`unique` are slow for uint64 here)."""
    if len(sorted_keys) == 0:
        return np.zeros(len(keys), bool)
    pos = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return sorted_keys[pos] == keys


def _first_occurrences(keys: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """The entries of `idx` whose key was not seen earlier in `idx`, in their original order."""
    order = idx[np.argsort(keys[idx], kind="stable")]  # equal keys keep draw order
    sk = keys[order]
    first = order[np.concatenate([[True], sk[1:] != sk[:-1]])]
    return np.sort(first)


def check_capacity(
    n: int,
    n_symbols: int,
    min_len: int,
    max_len: int,
    with_repeats: bool,
    heldout: bool,
    heldout_fraction: float,
    what: str = "n",
) -> None:
    """Raise ValueError when fewer than `n` distinct sequences exist in that part of the key space (the rejection
    sampler needs some slack: at most 95% of them)."""
    share = heldout_fraction if heldout else 1.0 - heldout_fraction
    capacity = sum(count_sequences(n_symbols, L, with_repeats) for L in range(min_len, max_len + 1)) * share
    if n > 0.95 * capacity:
        raise ValueError(
            f"{what}={n} is not allowed: {n} distinct sequences requested ({'held-out' if heldout else 'training'} "
            f"part, n_symbols={n_symbols}, lengths {min_len}..{max_len}) but only about {int(capacity)} exist; "
            "lower the count or widen n_symbols / the length range"
        )


def sample_sequences(
    n: int,
    n_symbols: int,
    min_len: int,
    max_len: int,
    seed: int,
    *,
    with_repeats: bool = True,
    heldout: bool,
    heldout_fraction: float,
    progress: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """`n` distinct sequences from the held-out (`heldout=True`) or the training part of the key space.

    Returns padded tokens `(n, max_len)` (PAD beyond each length) and lengths `(n,)`, in draw order. Lengths
    are drawn uniformly and rejected when their sequence was seen before, so lengths with few possible
    sequences saturate and the others fill the rest (as in the original's rejection sampler).
    Raises ValueError when fewer than `n` such sequences exist. `progress`: a tqdm bar advanced by the sequences
    each round keeps.
    """
    check_capacity(n, n_symbols, min_len, max_len, with_repeats, heldout, heldout_fraction)
    rng = np.random.default_rng(seed)
    tokens = np.empty((0, max_len), np.int32)
    lengths = np.empty(0, np.int32)
    seen = np.empty(0, np.uint64)  # sorted keys taken so far
    stalled = 0
    while len(lengths) < n:
        m = min(_MAX_ROUND, int(1.3 * (n - len(lengths))) + 1000)
        tok, lens = _draw(rng, m, n_symbols, min_len, max_len, with_repeats)
        keys = sequence_keys(tok, lens)
        keep = (heldout_mask(keys, heldout_fraction, salt=_KEY_SALT) == heldout) & ~_in_sorted(keys, seen)
        idx = _first_occurrences(keys, np.flatnonzero(keep))
        stalled = stalled + 1 if len(idx) == 0 else 0
        if stalled >= 20:
            raise ValueError(f"could not find {n} distinct sequences (found {len(lengths)}); lower the count")
        tokens = np.concatenate([tokens, tok[idx]])
        lengths = np.concatenate([lengths, lens[idx]])
        seen = np.sort(np.concatenate([seen, keys[idx]]))
        if progress is not None:
            progress.update(min(len(idx), n - (len(lengths) - len(idx))))
    return tokens[:n], lengths[:n]


def to_list_array(tokens: np.ndarray, lengths: np.ndarray) -> pa.Array:
    """Padded `(N, T)` rows -> Arrow `list<int32>` of each row's first `length` tokens (no per-row loop)."""
    mask = np.arange(tokens.shape[1]) < lengths[:, None]  # (N, T)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(tokens[mask].astype(np.int32)))


def split_specs(spec: RepeatDataSpec) -> dict[str, dict]:
    """Name -> (count, lengths, repeats, heldout, seed offset) of every split the spec asks for."""
    out = {
        "train": dict(n=spec.n_train, lens=(spec.min_len, spec.max_len), rep=spec.with_repeats, heldout=False),
        "valid": dict(n=spec.n_valid, lens=(spec.min_len, spec.max_len), rep=spec.with_repeats, heldout=True),
    }
    if spec.with_repeats and spec.max_len <= spec.n_symbols:
        out["valid_norepeat"] = dict(n=spec.n_valid_extra, lens=(spec.min_len, spec.max_len), rep=False, heldout=True)
    for extra in (1, 2):
        L = spec.max_len + extra
        out[f"valid_longer_{extra}"] = dict(n=spec.n_valid_extra, lens=(L, L), rep=spec.with_repeats, heldout=True)
    if spec.with_repeats and spec.max_len + 1 <= spec.n_symbols:
        L = spec.max_len + 1
        out["valid_longer_1_norepeat"] = dict(n=spec.n_valid_extra, lens=(L, L), rep=False, heldout=True)
    for i, s in enumerate(out.values()):
        s["seed_offset"] = 1000 * i
    return {k: v for k, v in out.items() if v["n"] > 0}


def generate_splits(spec: RepeatDataSpec, args: Any = None) -> dict[str, pa.Table]:
    """Every split of `spec` as an Arrow table with columns `input_ids` and `length` (a progress bar over all
    sequences; `args`: the run's TrainingArguments, see `core.progress`)."""
    spec.check()
    specs = split_specs(spec)
    tables = {}
    with progress_bar(desc="repeat data", total=sum(s["n"] for s in specs.values()), unit="seq", args=args) as bar:
        for name, s in specs.items():
            bar.set_postfix_str(name)
            tokens, lengths = sample_sequences(
                s["n"],
                spec.n_symbols,
                *s["lens"],
                spec.seed + s["seed_offset"],
                with_repeats=s["rep"],
                heldout=s["heldout"],
                heldout_fraction=spec.heldout_fraction,
                progress=bar,
            )
            tables[name] = pa.table({"input_ids": to_list_array(tokens, lengths), "length": pa.array(lengths)})
    return tables


DESCRIPTION = """\
Repeat-sequence task of "Recurrent Neural Networks Learn to Store and Generate Sequences using Non-Linear
Representations": a model reads `input_ids` (symbols 0..n_symbols-1, `length` of them) and must output the
same sequence. Sequences within a split are unique. Validation splits draw only from a fixed hash-selected
`heldout_fraction` of all sequences, which the train split never contains. `valid_longer_k` are k symbols
longer than any training sequence; `*_norepeat` contain no repeated symbol."""


def generate_repeat_dataset(
    out_dir: str | Path,
    spec: RepeatDataSpec,
    *,
    overwrite: bool = False,
    push_to_hub: str | None = None,
    args: Any = None,
) -> Path:
    """Generate `spec` into a dataset folder (`datasets.load_dataset(out_dir)` opens it); `args`: the run's
    TrainingArguments for the progress bar (its ``disable_tqdm``), None outside a run."""
    return write_dataset(
        out_dir,
        generate_splits(spec, args),
        asdict(spec),
        DESCRIPTION,
        overwrite=overwrite,
        push_to_hub=push_to_hub,
        title=Path(out_dir).name,
    )


class RepeatCollator:
    """Rows `{"input_ids": [...], "length": n}` -> padded `input_ids` (0-padded), `length` and `labels` (the
    sequence itself, -100 on padding) as tensors. Vectorised: one scatter of all symbols into the padded
    array."""

    def __call__(self, rows: list[dict]) -> dict:
        import torch

        lengths = np.fromiter((r["length"] for r in rows), dtype=np.int64, count=len(rows))
        flat = np.concatenate([np.asarray(r["input_ids"], dtype=np.int64) for r in rows])
        mask = np.arange(lengths.max()) < lengths[:, None]  # (B, T)
        ids = np.zeros(mask.shape, np.int64)
        ids[mask] = flat
        labels = np.full(mask.shape, -100, np.int64)
        labels[mask] = flat
        return {
            "input_ids": torch.from_numpy(ids),
            "length": torch.from_numpy(lengths),
            "labels": torch.from_numpy(labels),
        }
