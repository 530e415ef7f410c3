"""Linear languages over GF(2)^n for the arrows-of-time experiments (as in frotaur/CrafterPerplexity).

A line is ``bits(v ^ e) + sep + bits(M v ^ e')``: a uniform vector v, its image under a fixed invertible matrix
M over GF(2), and Bernoulli bit flips on each side. Forward models learn M, backward models M^-1, so a sparse M
with a dense inverse (or the reverse) makes one direction harder. This module holds the GF(2) algebra, the
matrices (named ``Matid{n}_{k}_{k_inv}``) and the vectorised generation of lines.

Design: `docs/arrows_of_time.md`, section "Data generation".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from hf_experiments.core.dataset_io import heldout_mask
from hf_experiments.core.progress import progress_bar

MAX_PACKED_BITS = 64
_CHUNK = 1 << 16  # vectors per step for flips/formatting: bounds (chunk, 64) temporaries to a few MB
_MAX_TRIES = 1_000  # random 0/1 matrices are invertible w.p. ~0.29, sparse I + k far more often
_MAX_DRAW = 1 << 22  # candidate vectors per rejection round (bounds memory)
_GIVE_UP_DRAWS = 10**6  # rejection draws with no usable vector before the partition is declared empty
_ENUMERATE_BITS = 22  # up to 2^22 vectors the held-out partition is enumerated instead of rejection-sampled


# --------------------------------------------------------------------------------------------
# Matrices over GF(2)
# --------------------------------------------------------------------------------------------
def _check_square_binary(M: np.ndarray, name: str = "M") -> np.ndarray:
    M = np.asarray(M)
    if M.ndim != 2 or M.shape[0] != M.shape[1] or M.shape[0] == 0:
        raise ValueError(f"{name} has shape {M.shape}; need a non-empty square matrix")
    if not np.isin(M, (0, 1)).all():
        raise ValueError(f"{name} has entries other than 0 and 1; need a matrix over GF(2)")
    return M.astype(np.uint8)


def _eliminate(A: np.ndarray, n_pivot_cols: int) -> tuple[np.ndarray, int]:
    """Gauss-Jordan elimination over GF(2) on bit-packed rows (``packbits(..., bitorder='little')``).

    Pivots on the first ``n_pivot_cols`` columns; XORs the pivot row into every other row with a 1 in
    the pivot column in one vectorised step. Returns (reduced rows, rank).
    """
    A = A.copy()  # (n_rows, n_bytes) uint8
    rank = 0
    for col in range(n_pivot_cols):
        byte, bit = col >> 3, np.uint8(1 << (col & 7))
        has = (A[:, byte] & bit) != 0  # (n_rows,)
        candidates = np.flatnonzero(has[rank:])
        if candidates.size == 0:
            continue
        pivot = rank + candidates[0]
        A[[rank, pivot]] = A[[pivot, rank]]
        has[[rank, pivot]] = has[[pivot, rank]]
        has[rank] = False
        A[has] ^= A[rank]
        rank += 1
    return A, rank


def _pack_rows(M: np.ndarray) -> np.ndarray:
    return np.packbits(M, axis=1, bitorder="little")  # (n, ceil(n/8)) uint8


def gf2_rank(M: np.ndarray) -> int:
    """Rank of a 0/1 matrix over GF(2)."""
    M = np.asarray(M, dtype=np.uint8)
    return _eliminate(_pack_rows(M), M.shape[1])[1]


def is_invertible(M: np.ndarray) -> bool:
    """Whether a square 0/1 matrix is invertible over GF(2)."""
    M = _check_square_binary(M)
    return gf2_rank(M) == M.shape[0]


def gf2_inverse(M: np.ndarray) -> np.ndarray:
    """Inverse over GF(2) by Gauss-Jordan on the bit-packed augmented matrix [M | I].

    Raises ValueError when M is singular.
    """
    M = _check_square_binary(M)
    n = M.shape[0]
    aug = np.concatenate([M, np.eye(n, dtype=np.uint8)], axis=1)  # (n, 2n)
    reduced, rank = _eliminate(_pack_rows(aug), n)
    if rank < n:
        raise ValueError(f"M (n={n}) is singular over GF(2) (rank {rank}); need an invertible matrix")
    return np.unpackbits(reduced, axis=1, count=2 * n, bitorder="little")[:, n:]  # right half: M^-1


def extra_ones(M: np.ndarray) -> int:
    """Ones in M beyond the n of the identity: ``M.sum() - n`` (the k in ``Matid{n}_{k}_{k_inv}``).

    For M = I + (k off-diagonal ones) this is k. An inverse may have zeros on its diagonal; the count
    is still total ones minus n, which is >= 0 for any invertible matrix.
    """
    M = np.asarray(M)
    return int(M.sum()) - M.shape[0]


def matrix_name(n: int, k: int, k_inv: int) -> str:
    """``Matid{n}_{k}_{k_inv}``: size, extra ones of M, extra ones of M^-1."""
    return f"Matid{n}_{k}_{k_inv}"


def _off_diagonal(flat: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Map indices in [0, n(n-1)) to off-diagonal (row, col) positions."""
    rows, c = np.divmod(flat, n - 1)
    return rows, c + (c >= rows)  # skip the diagonal entry of each row


def make_sparse_invertible(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """Identity plus ``k`` ones at distinct uniform off-diagonal positions, redrawn until invertible."""
    if n < 1:
        raise ValueError(f"n={n} is not allowed; use n >= 1")
    if not 0 <= k <= n * (n - 1):
        raise ValueError(f"k={k} is not allowed for n={n}; use 0 <= k <= n*(n-1) = {n * (n - 1)}")
    for _ in range(_MAX_TRIES):
        M = np.eye(n, dtype=np.uint8)
        M[_off_diagonal(rng.choice(n * (n - 1), size=k, replace=False), n)] = 1
        if is_invertible(M):
            return M
    raise RuntimeError(f"no invertible I + {k} ones found for n={n} in {_MAX_TRIES} draws")


def flip_entries(M: np.ndarray, num_flips: int, rng: np.random.Generator) -> np.ndarray:
    """Flip ``num_flips`` distinct off-diagonal entries of M, redrawn until the result is invertible.

    This is the sparse update of the perturbation experiment: M' differs from M in exactly
    ``num_flips`` off-diagonal positions.
    """
    M = _check_square_binary(M)
    n = M.shape[0]
    if not 0 <= num_flips <= n * (n - 1):
        raise ValueError(f"num_flips={num_flips} is not allowed for n={n}; use 0 <= num_flips <= {n * (n - 1)}")
    for _ in range(_MAX_TRIES):
        flipped = M.copy()
        flipped[_off_diagonal(rng.choice(n * (n - 1), size=num_flips, replace=False), n)] ^= 1
        if is_invertible(flipped):
            return flipped
    raise RuntimeError(f"no invertible matrix {num_flips} flips away from M found in {_MAX_TRIES} draws")


# --------------------------------------------------------------------------------------------
# Packed vectors
# --------------------------------------------------------------------------------------------
def _check_packable(n: int) -> None:
    if not 1 <= n <= MAX_PACKED_BITS:
        raise ValueError(f"n={n} is not allowed for line generation; use 1 <= n <= {MAX_PACKED_BITS}")


def row_masks(M: np.ndarray) -> np.ndarray:
    """Each row of M packed as a uint64 with bit j = M[r, j]; shape (n,)."""
    M = _check_square_binary(M)
    _check_packable(M.shape[0])
    weights = np.uint64(1) << np.arange(M.shape[0], dtype=np.uint64)  # (n,)
    return (M.astype(np.uint64) * weights).sum(axis=1, dtype=np.uint64)


def _popcount(x: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return np.bitwise_count(x)
    bytes_ = x.view(np.uint8).reshape(*x.shape, 8)  # (N, 8)
    return np.unpackbits(bytes_, axis=-1).sum(axis=-1)


def gf2_matvec(M: np.ndarray, v: np.ndarray) -> np.ndarray:
    """M v over GF(2) for packed vectors ``v`` (uint64, shape (N,)); returns packed (N,)."""
    masks = row_masks(M)
    v = np.asarray(v, dtype=np.uint64)
    out = np.zeros_like(v)
    for r, mask in enumerate(masks):  # loop over the n rows; each step is vectorised over N
        parity = (_popcount(v & mask) & 1).astype(np.uint64)
        out |= parity << np.uint64(r)
    return out


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """(N, n) 0/1 array -> packed uint64 (N,), column i -> bit i."""
    bits = np.asarray(bits, dtype=np.uint8)
    _check_packable(bits.shape[1])
    packed = np.packbits(bits, axis=1, bitorder="little")  # (N, ceil(n/8))
    padded = np.zeros((bits.shape[0], 8), dtype=np.uint8)
    padded[:, : packed.shape[1]] = packed
    return padded.view("<u8").reshape(-1).astype(np.uint64)


def unpack_bits(packed: np.ndarray, n: int) -> np.ndarray:
    """Packed uint64 (N,) -> (N, n) uint8 0/1 array, bit i -> column i."""
    as_bytes = np.asarray(packed, dtype="<u8").view(np.uint8).reshape(-1, 8)  # (N, 8)
    return np.unpackbits(as_bytes, axis=1, count=n, bitorder="little")  # (N, n)


def bernoulli_bits(num: int, n: int, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Packed flip masks: each of the ``n`` bits of each of ``num`` vectors is 1 with probability ``rate``."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"perturbation_rate={rate} is not allowed; use a value in [0, 1]")
    out = np.zeros(num, dtype=np.uint64)
    if rate == 0.0:
        return out
    for s in range(0, num, _CHUNK):  # fixed chunking keeps the random stream independent of callers
        size = min(_CHUNK, num - s)
        out[s : s + size] = pack_bits(rng.random((size, n)) < rate)
    return out


# --------------------------------------------------------------------------------------------
# Lines
# --------------------------------------------------------------------------------------------
class LinearSample(NamedTuple):
    """Packed uint64 arrays of shape (N,): clean ``v`` and ``Mv``, and the written ``x``, ``y``."""

    v: np.ndarray
    mv: np.ndarray
    x: np.ndarray  # v ^ e
    y: np.ndarray  # Mv ^ e'


def sample_vectors(
    n: int,
    num_vectors: int,
    rng: np.random.Generator,
    *,
    heldout_fraction: float = 0.0,
    heldout: bool = False,
) -> np.ndarray:
    """Uniform packed vectors of GF(2)^n; with ``heldout_fraction > 0`` only kept (or only held-out) ones.

    The held-out set is a fixed hash partition of GF(2)^n
    (:func:`~hf_experiments.core.dataset_io.heldout_mask`), so a validation vector never appears as a
    clean training input.
    """
    _check_packable(n)
    if num_vectors < 0:
        raise ValueError(f"num_vectors={num_vectors} is not allowed; use num_vectors >= 0")
    if not 0.0 <= heldout_fraction < 1.0:
        raise ValueError(f"heldout_fraction={heldout_fraction} is not allowed; use a value in [0, 1)")
    if heldout and heldout_fraction <= 0:
        raise ValueError(f"heldout_fraction={heldout_fraction} leaves no held-out vectors; use > 0")
    top = np.uint64(2**n - 1)
    if heldout_fraction <= 0:
        return rng.integers(0, top, size=num_vectors, dtype=np.uint64, endpoint=True)
    if n <= _ENUMERATE_BITS:  # small space: draw exactly from the enumerated side of the partition
        space = np.arange(2**n, dtype=np.uint64)
        side = space[heldout_mask(space, heldout_fraction, salt=n) == heldout]
        if len(side) == 0 and num_vectors > 0:
            raise ValueError(
                f"heldout_fraction={heldout_fraction} leaves no {'held-out' if heldout else 'kept'} vectors "
                f"in GF(2)^{n}; change the fraction (0 disables the partition)"
            )
        return side[rng.integers(len(side), size=num_vectors)] if num_vectors else side[:0]
    accept = heldout_fraction if heldout else 1.0 - heldout_fraction
    got, need, drawn, kept = [], num_vectors, 0, 0
    while need > 0:
        size = min(int(need / accept * 1.2), _MAX_DRAW) + 1024
        v = rng.integers(0, top, size=size, dtype=np.uint64, endpoint=True)
        keep = v[heldout_mask(v, heldout_fraction, salt=n) == heldout][:need]
        got.append(keep)
        need, drawn, kept = need - len(keep), drawn + size, kept + len(keep)
        if need > 0 and kept == 0 and drawn >= _GIVE_UP_DRAWS:
            side = "held-out" if heldout else "kept"
            raise ValueError(
                f"heldout_fraction={heldout_fraction} leaves (almost) no {side} vectors in GF(2)^{n}: "
                f"{kept} of {drawn} draws usable; change the fraction (0 disables the partition)"
            )
        accept = max(kept, 1) / drawn
    return np.concatenate(got)


def generate_linear_sample(
    M: np.ndarray,
    num_vectors: int,
    perturbation_rate: float,
    seed: int | Sequence[int],
    *,
    heldout_fraction: float = 0.0,
    heldout: bool = False,
) -> LinearSample:
    """Draw vectors and flips for :func:`generate_linear_lines` (same seed -> same sample).

    v, e and e' come from three independent child streams of ``seed`` (an int or a list of ints, as
    ``np.random.SeedSequence`` takes), so the flips never shift v.
    """
    M = _check_square_binary(M)
    n = M.shape[0]
    rng_v, rng_e, rng_e2 = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))
    v = sample_vectors(n, num_vectors, rng_v, heldout_fraction=heldout_fraction, heldout=heldout)
    mv = gf2_matvec(M, v)
    x = v ^ bernoulli_bits(num_vectors, n, perturbation_rate, rng_e)
    y = mv ^ bernoulli_bits(num_vectors, n, perturbation_rate, rng_e2)
    return LinearSample(v=v, mv=mv, x=x, y=y)


def format_bit_lines(
    x: np.ndarray, y: np.ndarray, n: int, sep: str = "_______", *, progress: bool = False
) -> np.ndarray:
    """Lines ``bits(x) + sep + bits(y)`` as an ``S<2n+len(sep)>`` array of shape (N,)."""
    _check_packable(n)
    if not sep.isascii() or any(c in "01" for c in sep):
        raise ValueError(f"sep={sep!r} is not allowed; use ASCII characters other than '0' and '1'")
    width = 2 * n + len(sep)
    lines = np.empty((len(x), width), dtype=np.uint8)  # (N, L) ASCII codes
    lines[:, n : n + len(sep)] = np.frombuffer(sep.encode(), dtype=np.uint8)
    zero = np.uint8(ord("0"))
    for s in progress_bar(range(0, len(x), _CHUNK), desc="linear lines", unit="chunk", disable=not progress):
        lines[s : s + _CHUNK, :n] = unpack_bits(x[s : s + _CHUNK], n) + zero
        lines[s : s + _CHUNK, n + len(sep) :] = unpack_bits(y[s : s + _CHUNK], n) + zero
    return lines.view(f"S{width}").reshape(len(x))  # (N, L) uint8 -> (N,) S<L>


def parse_bit_line(line: str | bytes, sep: str = "_______") -> tuple[np.ndarray, np.ndarray]:
    """Inverse of the line format: the two 0/1 vectors (uint8) on either side of ``sep``."""
    text = line.decode() if isinstance(line, bytes) else line
    left, found, right = text.partition(sep)
    if not found or set(left + right) - {"0", "1"}:
        raise ValueError(f"line={text!r} is not a linear-language line 'bits{sep}bits'")
    return np.frombuffer(left.encode(), np.uint8) - ord("0"), np.frombuffer(right.encode(), np.uint8) - ord("0")


def generate_linear_lines(
    M: np.ndarray,
    num_vectors: int,
    perturbation_rate: float,
    seed: int | Sequence[int],
    sep: str = "_______",
    *,
    heldout_fraction: float = 0.0,
    heldout: bool = False,
    progress: bool = False,
) -> np.ndarray:
    """``num_vectors`` lines ``bits(v ^ e) + sep + bits(M v ^ e')``; ``S<2n+len(sep)>`` array, shape (N,)."""
    sample = generate_linear_sample(
        M, num_vectors, perturbation_rate, seed, heldout_fraction=heldout_fraction, heldout=heldout
    )
    return format_bit_lines(sample.x, sample.y, np.asarray(M).shape[0], sep, progress=progress)
