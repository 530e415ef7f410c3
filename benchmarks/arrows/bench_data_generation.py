"""Vectorised arrows-of-time data generation against a straightforward per-line Python generator.

    python benchmarks/arrows/bench_data_generation.py            # 10^6 prime lines, 10^6 linear lines
    python benchmarks/arrows/bench_data_generation.py --full     # also 10^8 prime lines

The baselines (random.choice of primes + f-strings; a per-vector loop over bits) run on fewer lines
and are compared per line. The prime lines are also timed in parts: sampling, formatting (against the python
generator and against the byte-copy floor of the same lines), parquet writing; `--n_kernel` lines (10^7) go
through the compiled kernel that `format_prime_lines` uses from 4·10^6 lines on, against the table path and the
copy floor of the same lines. The last printed line is JSON:
``{"primes_speedup": x, "primes_format_over_copy_floor": f, "linear_speedup": y, ...}``.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from hf_experiments.arrows import primes as primes_module
from hf_experiments.arrows.linear_language import generate_linear_lines, make_sparse_invertible
from hf_experiments.arrows.primes import (
    format_prime_lines,
    generate_prime_lines,
    primes_in_digit_range,
    sample_prime_pairs,
)


def _timed(fn, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - start, out


def python_prime_lines(n: int, primes: list[int], max_n_digits: int, seed: int) -> list[str]:
    """The obvious per-line generator the vectorised one replaces."""
    rng = random.Random(seed)
    d = max_n_digits
    lines = []
    for _ in range(n):
        p = rng.choice(primes)
        q = rng.choice(primes)
        while q == p:
            q = rng.choice(primes)
        lines.append(f"{p:0{d}d} * {q:0{d}d}   =   " + f"{p * q:0{2 * d}d}"[::-1])
    return lines


def python_linear_lines(M: np.ndarray, n_lines: int, rate: float, seed: int, sep: str = "_______") -> list[str]:
    """Per-vector loop: draw bits, multiply row by row, flip, format."""
    rng = random.Random(seed)
    rows = M.tolist()
    n = len(rows)
    lines = []
    for _ in range(n_lines):
        v = [rng.getrandbits(1) for _ in range(n)]
        mv = [sum(a & b for a, b in zip(row, v)) & 1 for row in rows]
        x = [b ^ (rng.random() < rate) for b in v]
        y = [b ^ (rng.random() < rate) for b in mv]
        lines.append("".join(map(str, x)) + sep + "".join(map(str, y)))
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="also time 10^8 prime lines (about 6 GB of memory)")
    parser.add_argument("--n_kernel", type=int, default=10**7, help="lines formatted by the compiled kernel")
    parser.add_argument("--n_vectorised", type=int, default=10**6)
    parser.add_argument("--n_python", type=int, default=10**5)
    args = parser.parse_args(argv)
    result: dict[str, float] = {}

    primes = primes_in_digit_range(1, 5).tolist()
    generate_prime_lines(1000, 1, 5, seed=0)  # warm-up (sieve, imports)
    t_vec, _ = _timed(generate_prime_lines, args.n_vectorised, 1, 5, 0)
    t_py, _ = _timed(python_prime_lines, args.n_python, primes, 5, 0)
    per_vec, per_py = t_vec / args.n_vectorised, t_py / args.n_python
    result.update(
        primes_vectorised_s=t_vec,
        primes_vectorised_lines=args.n_vectorised,
        primes_python_s=t_py,
        primes_python_lines=args.n_python,
        primes_speedup=per_py / per_vec,
    )
    print(
        f"primes: vectorised {args.n_vectorised:,} lines in {t_vec:.2f}s; "
        f"python {args.n_python:,} lines in {t_py:.2f}s; speedup per line x{per_py / per_vec:.0f}"
    )
    # The parts, on the same lines: sampling the pairs, formatting them, the byte-copy floor of the formatted
    # lines (the least any formatter must spend writing them), and writing them as parquet.
    rng = np.random.default_rng(0)
    t_sample, (p, q) = _timed(sample_prime_pairs, args.n_vectorised, 1, 5, rng)
    t_format, lines = _timed(format_prime_lines, p, q, 5)
    t_copy = min(_timed(np.copy, lines)[0] for _ in range(5))
    with tempfile.TemporaryDirectory() as tmp:
        table = pa.table({"text": pa.array(lines.astype(object))})
        t_parquet, _ = _timed(pq.write_table, table, f"{tmp}/lines.parquet")
    result.update(
        primes_sample_s=t_sample,
        primes_format_s=t_format,
        primes_copy_floor_s=t_copy,
        primes_parquet_s=t_parquet,
        primes_format_over_python=per_py / (t_format / args.n_vectorised),
        primes_format_over_copy_floor=t_format / t_copy,
    )
    print(
        f"primes parts ({args.n_vectorised:,} lines): sample {t_sample:.3f}s, format {t_format:.3f}s "
        f"(x{per_py / (t_format / args.n_vectorised):.0f} the python generator per line, "
        f"{t_format / t_copy:.1f}x the byte-copy floor {t_copy:.4f}s), parquet {t_parquet:.3f}s"
    )
    # Many lines: formatting through the compiled kernel (primes.KERNEL_MIN_LINES and up), its one-off numba
    # import and cache load timed apart, against the table path and the copy floor of the same lines.
    n_big = args.n_kernel
    saved = primes_module.KERNEL_MIN_LINES
    p_big, q_big = sample_prime_pairs(n_big, 1, 5, np.random.default_rng(1))
    try:
        primes_module.KERNEL_MIN_LINES = 0
        t_load, _ = _timed(format_prime_lines, p_big[:1], q_big[:1], 5)  # import numba, load (or compile) once
        primes_module.KERNEL_MIN_LINES = saved
        t_kernel, big = _timed(format_prime_lines, p_big, q_big, 5)
        t_big_copy = min(_timed(np.copy, big)[0] for _ in range(3))
        primes_module.KERNEL_MIN_LINES = 10**18
        t_table, table_lines = _timed(format_prime_lines, p_big, q_big, 5)
    finally:
        primes_module.KERNEL_MIN_LINES = saved
    assert np.array_equal(table_lines, big)
    result.update(
        primes_kernel_lines=n_big,
        primes_kernel_load_s=t_load,
        primes_kernel_format_s=t_kernel,
        primes_kernel_table_format_s=t_table,
        primes_kernel_copy_floor_s=t_big_copy,
        primes_kernel_over_copy_floor=t_kernel / t_big_copy,
        primes_kernel_format_over_python=per_py / (t_kernel / n_big),
    )
    print(
        f"primes, {n_big:,} lines: compiled format {t_kernel:.3f}s (numba load once {t_load:.2f}s), table path "
        f"{t_table:.3f}s, copy floor {t_big_copy:.4f}s: {t_kernel / t_big_copy:.1f}x the floor, "
        f"x{per_py / (t_kernel / n_big):.0f} the python generator per line"
    )
    if args.full:
        t_full, _ = _timed(generate_prime_lines, 10**8, 1, 5, 0)
        result["primes_1e8_s"] = t_full
        print(f"primes: 100,000,000 lines (sample + format) in {t_full:.2f}s")

    M = make_sparse_invertible(20, 6, np.random.default_rng(0))
    n_lin_py = max(1, args.n_python // 2)
    t_vec, _ = _timed(generate_linear_lines, M, args.n_vectorised, 0.01, 0)
    t_py, _ = _timed(python_linear_lines, M, n_lin_py, 0.01, 0)
    per_vec, per_py = t_vec / args.n_vectorised, t_py / n_lin_py
    result.update(
        linear_vectorised_s=t_vec,
        linear_vectorised_lines=args.n_vectorised,
        linear_python_s=t_py,
        linear_python_lines=n_lin_py,
        linear_speedup=per_py / per_vec,
    )
    print(
        f"linear (n=20): vectorised {args.n_vectorised:,} lines in {t_vec:.2f}s; "
        f"python {n_lin_py:,} lines in {t_py:.2f}s; speedup per line x{per_py / per_vec:.0f}"
    )
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
