"""The prime-line writer as one compiled loop (numba), for `primes.format_prime_lines` on many lines.

Two digits per division by 100 (a constant, so a multiply, not a divide) and every byte written once, where the
numpy table path makes a dozen passes over the (N, L) array. numba is optional (`pip install hf-experiments[fast]`);
this module is imported only when it is installed and many lines are formatted: importing numba and loading the
cached kernel cost ~0.7 s per process. Byte-identical to the table path (`tests/arrows/test_primes.py`).
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True, inline="always")
def _put_padded(out: np.ndarray, i: int, start: int, x: np.uint64, d: int, pairs: np.ndarray) -> None:
    """`x` as `d` zero-padded digits, most significant first, at `out[i, start:start + d]`."""
    k = d
    while k >= 2:
        r = x % np.uint64(100)
        x //= np.uint64(100)
        out[i, start + k - 2] = pairs[2 * r]
        out[i, start + k - 1] = pairs[2 * r + 1]
        k -= 2
    if k == 1:
        out[i, start] = np.uint8(48 + x % np.uint64(10))


@numba.njit(cache=True, nogil=True)
def write_lines(
    p: np.ndarray, q: np.ndarray, d: int, mul: np.ndarray, eq: np.ndarray, pairs: np.ndarray, out: np.ndarray
) -> None:
    """Row i of `out` (N, L) uint8 := `p[i] mul q[i] eq reversed(p[i]*q[i])`; `pairs` = `primes._digit_pairs()`.
    Unsigned arithmetic: a division by a constant is then a multiply and a shift, without Python's floor fix-up."""
    q_at = d + mul.size
    prod_at = q_at + d + eq.size
    for i in range(p.shape[0]):
        for k in range(mul.size):
            out[i, d + k] = mul[k]
        for k in range(eq.size):
            out[i, q_at + d + k] = eq[k]
        a, b = np.uint64(p[i]), np.uint64(q[i])
        _put_padded(out, i, 0, a, d, pairs)
        _put_padded(out, i, q_at, b, d, pairs)
        x = a * b  # 2d digits, least significant first
        for j in range(0, 2 * d, 2):
            r = x % np.uint64(100)
            x //= np.uint64(100)
            out[i, prod_at + j] = pairs[2 * r + 1]
            out[i, prod_at + j + 1] = pairs[2 * r]
