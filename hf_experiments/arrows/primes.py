"""Prime-product lines for the arrows-of-time experiments (as in frotaur/CrafterPerplexity).

A line multiplies two distinct zero-padded primes and writes the product zero-padded and *reversed*
(``00013 * 00101   =   3131000000``): reading forward a model must multiply, reading backward it must
factorise. Lines are built vectorised from a numpy sieve, so 10^7 lines take seconds.

Design: `docs/arrows_of_time.md`, section "Data generation".
"""

from __future__ import annotations

import functools
import logging

import numpy as np

from hf_experiments.core.dataset_io import heldout_mask
from hf_experiments.core.progress import progress_bar

logger = logging.getLogger(__name__)

MAX_DIGITS = 9  # the product of two 9-digit numbers (< 10^18) still fits in int64
_CHUNK = 1 << 18  # rows formatted per step: bounds the (chunk, L) temporaries to a few MB
_MAX_DRAW = 1 << 22  # candidate pairs per rejection round (bounds memory)
_GIVE_UP_DRAWS = 10**6  # rejection draws with no usable pair before the partition is declared empty


def _check_digits(min_n_digits: int, max_n_digits: int) -> None:
    if not 1 <= min_n_digits <= max_n_digits <= MAX_DIGITS:
        raise ValueError(
            f"(min_n_digits, max_n_digits)=({min_n_digits}, {max_n_digits}) is not allowed; "
            f"need 1 <= min_n_digits <= max_n_digits <= {MAX_DIGITS}"
        )


def primes_in_digit_range(min_n_digits: int, max_n_digits: int) -> np.ndarray:
    """All primes with between ``min_n_digits`` and ``max_n_digits`` digits (inclusive), ascending.

    Sieve of Eratosthenes over odd numbers; memory is 10^max_n_digits / 2 bytes.
    """
    _check_digits(min_n_digits, max_n_digits)
    limit = 10**max_n_digits
    odd = np.ones(limit // 2, dtype=bool)  # odd[i] <-> 2*i + 1
    odd[0] = False  # 1 is not prime
    for i in range(1, (int(limit**0.5) + 1) // 2 + 1):
        if odd[i]:
            p = 2 * i + 1
            odd[p * p // 2 :: p] = False  # odd multiples of p from p^2
    primes = np.concatenate([[2], 2 * np.flatnonzero(odd) + 1]).astype(np.int64)
    low = 10 ** (min_n_digits - 1) if min_n_digits > 1 else 2
    return primes[primes >= low]


def heldout_pair_mask(p: np.ndarray, q: np.ndarray, fraction: float) -> np.ndarray:
    """True where the *unordered* pair {p, q} is held out for validation.

    Unordered so that ``q * p`` never sits in train while ``p * q`` is in validation.
    """
    lo, hi = np.minimum(p, q), np.maximum(p, q)
    return heldout_mask(lo * 10**MAX_DIGITS + hi, fraction, salt=0x5052494D)  # salt: "PRIM"


def _draw_distinct(n_primes: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Uniform ordered pairs of distinct indices in [0, n_primes)."""
    i = rng.integers(n_primes, size=size)
    j = rng.integers(n_primes - 1, size=size)
    j += j >= i  # skip the diagonal: uniform over the other n_primes - 1 indices
    return i, j


def sample_prime_pairs(
    n_pairs: int,
    min_n_digits: int,
    max_n_digits: int,
    rng: np.random.Generator,
    *,
    heldout_fraction: float = 0.0,
    heldout: bool = False,
    pair_order: str = "smaller_first",
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n_pairs`` pairs (p, q) of distinct primes, uniformly, with replacement.

    ``pair_order="smaller_first"`` (the original's: it wrote each drawn pair as ``min * max``) puts the smaller
    prime first; ``"random"`` keeps the drawn order, so each unordered pair appears both ways equally often. The
    same draws either way: only the order within a line differs.

    With ``heldout_fraction > 0`` the unordered pairs are hash-partitioned (:func:`heldout_pair_mask`):
    ``heldout=False`` draws only from the kept pairs (training), ``heldout=True`` only from the held-out
    ones (validation), by rejection. Returns int64 arrays ``p, q`` of shape (n_pairs,).
    """
    if n_pairs < 0:
        raise ValueError(f"n_pairs={n_pairs} is not allowed; use n_pairs >= 0")
    if not 0.0 <= heldout_fraction < 1.0:
        raise ValueError(f"heldout_fraction={heldout_fraction} is not allowed; use a value in [0, 1)")
    if heldout and heldout_fraction <= 0:
        raise ValueError(f"heldout_fraction={heldout_fraction} leaves nothing to draw held-out pairs from; use > 0")
    if pair_order not in PAIR_ORDERS:
        raise ValueError(f"pair_order={pair_order!r} is not allowed; use one of {', '.join(PAIR_ORDERS)}")
    p, q = _sample_pairs(n_pairs, min_n_digits, max_n_digits, rng, heldout_fraction, heldout)
    if pair_order == "smaller_first":
        p, q = np.minimum(p, q), np.maximum(p, q)
    return p, q


def _sample_pairs(
    n_pairs: int, min_n_digits: int, max_n_digits: int, rng: np.random.Generator, heldout_fraction: float, heldout: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Ordered uniform pairs of distinct primes (the draws `sample_prime_pairs` orders)."""
    primes = primes_in_digit_range(min_n_digits, max_n_digits)
    if len(primes) < 2:
        raise ValueError(f"digit range ({min_n_digits}, {max_n_digits}) holds fewer than two primes")
    if heldout_fraction <= 0:
        i, j = _draw_distinct(len(primes), n_pairs, rng)
        return primes[i], primes[j]

    accept = heldout_fraction if heldout else 1.0 - heldout_fraction  # expected acceptance rate
    got_p: list[np.ndarray] = []
    got_q: list[np.ndarray] = []
    need, drawn, kept = n_pairs, 0, 0
    while need > 0:
        size = min(int(need / accept * 1.2), _MAX_DRAW) + 1024
        i, j = _draw_distinct(len(primes), size, rng)
        p, q = primes[i], primes[j]
        keep = np.flatnonzero(heldout_pair_mask(p, q, heldout_fraction) == heldout)[:need]
        got_p.append(p[keep])
        got_q.append(q[keep])
        need -= len(keep)
        drawn, kept = drawn + size, kept + len(keep)
        if need > 0 and kept == 0 and drawn >= _GIVE_UP_DRAWS:
            side = "held-out" if heldout else "kept"
            raise ValueError(
                f"heldout_fraction={heldout_fraction} leaves (almost) no {side} prime pairs in digit range "
                f"({min_n_digits}, {max_n_digits}): {kept} of {drawn} draws usable; "
                "change the fraction or the range"
            )
        accept = max(kept, 1) / drawn
    return np.concatenate(got_p), np.concatenate(got_q)


PAIR_ORDERS = ("smaller_first", "random")


def line_width(max_n_digits: int, mul_space: str = " ", eq_space: str = "   ") -> int:
    """Characters per line: two padded primes, the product (2 * max_n_digits), and the operators."""
    return 4 * max_n_digits + 2 * len(mul_space) + 2 * len(eq_space) + 2


# Five ASCII digits per table entry, forward and reversed, as the low bytes of a uint64: a number becomes its
# base-10^5 chunks (one division per five digits, not one per digit) and each chunk one 8-byte gather.
# Byte-identical to the digit-at-a-time loop it replaced (checked against it), 2.3x faster to format 10^6 lines
# (benchmarks/arrows/bench_data_generation.py).
_CHUNK_DIGITS = 5


@functools.cache
def _chunk_tables() -> tuple[np.ndarray, np.ndarray]:
    """(forward, reversed) tables of 10^5 uint64: bytes 0-4 the zero-padded digits of the index, 5-7 zero."""
    v = np.arange(10**_CHUNK_DIGITS, dtype=np.int64)
    digits = (v[:, None] // 10 ** np.arange(_CHUNK_DIGITS - 1, -1, -1) % 10 + ord("0")).astype(np.uint8)
    tables = []
    for cols in (digits, digits[:, ::-1]):
        table = np.zeros((len(v), 8), dtype=np.uint8)
        table[:, :_CHUNK_DIGITS] = cols
        tables.append(table.view("<u8")[:, 0].copy())
    return tables[0], tables[1]


def _write_digits(out: np.ndarray, values: np.ndarray, start: int, width: int, reverse: bool) -> None:
    """Write ``values`` as ``width`` zero-padded decimal digits into ``out[:, start:start+width]`` (reversed:
    least significant digit first)."""
    forward, backward = _chunk_tables()
    c, x = _CHUNK_DIGITS, values
    for i in range(-(-width // c)):  # least significant chunk first
        x, chunk = np.divmod(x, 10**c)
        n = min(c, width - c * i)  # its digits that fit: the most significant chunk may be partial
        if reverse:  # chunk i holds digits c*i .. c*i+n-1 counted from the least significant
            digits = backward[chunk].view(np.uint8).reshape(-1, 8)[:, :n]
            out[:, start + c * i : start + c * i + n] = digits
        else:
            digits = forward[chunk].view(np.uint8).reshape(-1, 8)[:, c - n : c]
            end = start + width - c * i
            out[:, end - n : end] = digits


# From this many lines on, formatting runs as one compiled loop when numba is installed (optional: the `fast`
# extra; the dev install has it): importing numba and loading the cached kernel take ~0.7 s once per process,
# which the table path below beats on fewer lines. Byte-identical to the table path (tests/arrows/test_primes.py);
# 1.3x the table path on 10^7 fresh lines (benchmarks/arrows/bench_data_generation.py), not more: the loop is
# bound by its digit arithmetic, not by memory.
KERNEL_MIN_LINES = 4_000_000


@functools.cache
def _digit_pairs() -> np.ndarray:
    """(200,) uint8: the two ASCII digits of 00..99, tens first."""
    v = np.arange(100)
    return np.stack([v // 10, v % 10], axis=1).astype(np.uint8).reshape(-1) + ord("0")


@functools.cache
def _compiled_kernel():  # -> `prime_kernel.write_lines`, or None without numba
    try:
        from .prime_kernel import write_lines
    except ImportError:
        return None
    return write_lines


def _format_compiled(
    p: np.ndarray, q: np.ndarray, d: int, mul: bytes, eq: bytes, width: int, progress: bool
) -> np.ndarray | None:
    """The (N, L) uint8 lines from the compiled kernel, or None without numba or when its first call (which
    compiles or loads the cached build) fails: the table path then gives the same bytes."""
    kernel = _compiled_kernel()
    if kernel is None:
        return None
    lines = np.empty((len(p), width), dtype=np.uint8)
    mul_b, eq_b, pairs = np.frombuffer(mul, np.uint8), np.frombuffer(eq, np.uint8), _digit_pairs()
    try:
        kernel(p[:1], q[:1], d, mul_b, eq_b, pairs, lines[:1])
    except Exception as err:  # any numba failure: fall back
        logger.warning(f"the compiled prime-line writer failed ({type(err).__name__}: {err}); using numpy tables")
        return None
    starts = range(0, len(p), _CHUNK * 8)
    for s in progress_bar(starts, desc="prime lines", unit="chunk", disable=not progress):
        kernel(p[s : s + _CHUNK * 8], q[s : s + _CHUNK * 8], d, mul_b, eq_b, pairs, lines[s : s + _CHUNK * 8])
    return lines


def format_prime_lines(
    p: np.ndarray,
    q: np.ndarray,
    max_n_digits: int,
    mul_space: str = " ",
    eq_space: str = "   ",
    *,
    progress: bool = False,
) -> np.ndarray:
    """Format pairs as lines ``p * q = reversed(padded p*q)``; returns an ``S<L>`` array of shape (N,)."""
    _check_digits(1, max_n_digits)
    for name, space in (("mul_space", mul_space), ("eq_space", eq_space)):
        if not space.isascii() or any(c.isdigit() or c in "*=" for c in space):
            raise ValueError(f"{name}={space!r} is not allowed; use ASCII characters other than digits, '*' and '='")
    p, q = np.asarray(p, dtype=np.int64), np.asarray(q, dtype=np.int64)
    if p.shape != q.shape or p.ndim != 1:
        raise ValueError(f"p and q must be 1-D arrays of equal length; got shapes {p.shape} and {q.shape}")
    if len(p) and (min(p.min(), q.min()) < 0 or max(p.max(), q.max()) >= 10**max_n_digits):
        raise ValueError(f"p and q must lie in [0, 10^{max_n_digits}) for max_n_digits={max_n_digits}")

    d = max_n_digits
    mul, eq = f"{mul_space}*{mul_space}".encode(), f"{eq_space}={eq_space}".encode()
    width = line_width(d, mul_space, eq_space)
    compiled = _format_compiled(p, q, d, mul, eq, width, progress) if len(p) >= KERNEL_MIN_LINES else None
    if compiled is not None:
        return compiled.view(f"S{width}").reshape(len(p))
    q_at = d + len(mul)
    prod_at = q_at + d + len(eq)
    lines = np.empty((len(p), width), dtype=np.uint8)  # (N, L) ASCII codes
    lines[:, d:q_at] = np.frombuffer(mul, dtype=np.uint8)
    lines[:, q_at + d : prod_at] = np.frombuffer(eq, dtype=np.uint8)
    starts = range(0, len(p), _CHUNK)
    for s in progress_bar(starts, desc="prime lines", unit="chunk", disable=not progress):
        block = lines[s : s + _CHUNK]
        bp, bq = p[s : s + _CHUNK], q[s : s + _CHUNK]
        _write_digits(block, bp, 0, d, reverse=False)
        _write_digits(block, bq, q_at, d, reverse=False)
        _write_digits(block, bp * bq, prod_at, 2 * d, reverse=True)
    return lines.view(f"S{width}").reshape(len(p))  # (N, L) uint8 -> (N,) S<L>


def generate_prime_lines(
    n_pairs: int,
    min_n_digits: int,
    max_n_digits: int,
    seed: int,
    mul_space: str = " ",
    eq_space: str = "   ",
    *,
    progress: bool = False,
) -> np.ndarray:
    """``n_pairs`` prime-product lines from ``np.random.default_rng(seed)``; ``S<L>`` array of shape (N,)."""
    p, q = sample_prime_pairs(n_pairs, min_n_digits, max_n_digits, np.random.default_rng(seed))
    return format_prime_lines(p, q, max_n_digits, mul_space, eq_space, progress=progress)


def parse_prime_line(line: str | bytes) -> tuple[int, int, int]:
    """Inverse of the line format: ``(p, q, product)``, with the product un-reversed."""
    text = line.decode() if isinstance(line, bytes) else line
    try:
        lhs, rhs = text.split("=")
        a, b = lhs.split("*")
        return int(a), int(b), int(rhs.strip()[::-1])
    except ValueError as err:
        raise ValueError(f"line={text!r} is not a prime-product line 'p * q = reversed(p*q)'") from err
