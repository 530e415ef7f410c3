"""Prime-product lines: right primes and reversed product, deterministic, held-out pairs never trained on."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from datasets import load_dataset

from hf_experiments.arrows.primes import (
    format_prime_lines,
    generate_prime_lines,
    heldout_pair_mask,
    parse_prime_line,
    primes_in_digit_range,
    sample_prime_pairs,
)
from hf_experiments.core.dataset_io import read_card_params

ROOT = Path(__file__).resolve().parents[2]


def _is_prime(n: int) -> bool:
    """Trial division: an oracle independent of the sieve."""
    if n < 2:
        return False
    d = 2
    while d * d <= n:
        if n % d == 0:
            return False
        d += 1
    return True


def _reference_line(p: int, q: int, d: int, mul: str = " ", eq: str = "   ") -> str:
    """The line format written the obvious way, with f-strings."""
    return f"{p:0{d}d}{mul}*{mul}{q:0{d}d}{eq}={eq}" + f"{p * q:0{2 * d}d}"[::-1]


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "data_scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_spec_example_line():
    assert format_prime_lines(np.array([13]), np.array([101]), 5)[0] == b"00013 * 00101   =   3131000000"
    assert parse_prime_line("00013 * 00101   =   3131000000") == (13, 101, 1313)


@pytest.mark.parametrize("lo, hi", [(1, 1), (1, 3), (2, 2), (3, 4)])
def test_sieve_matches_trial_division(lo, hi):
    expected = [n for n in range(10 ** (lo - 1), 10**hi) if _is_prime(n)]
    assert primes_in_digit_range(lo, hi).tolist() == expected


def test_sieve_prime_count_up_to_10_to_the_5():
    assert len(primes_in_digit_range(1, 5)) == 9592  # pi(10^5)


@pytest.mark.parametrize("lo, hi, mul, eq", [(1, 5, " ", "   "), (2, 3, "", " "), (4, 6, "  ", "")])
def test_every_line_matches_the_reference_format(lo, hi, mul, eq):
    lines = generate_prime_lines(3000, lo, hi, seed=1, mul_space=mul, eq_space=eq)
    assert lines.shape == (3000,) and lines.dtype.itemsize == 4 * hi + 2 * len(mul) + 2 * len(eq) + 2
    checked_primes = {}
    for line in lines[:400]:
        p, q, product = parse_prime_line(line)
        assert line.decode() == _reference_line(p, q, hi, mul, eq)
        assert product == p * q and p != q
        for x in (p, q):
            assert lo <= len(str(x)) <= hi
            checked_primes.setdefault(x, _is_prime(x))
    assert all(checked_primes.values())


@pytest.mark.parametrize("mul, eq", [(" ", "   "), ("", "_"), ("  ", "")])
def test_the_compiled_kernel_writes_the_same_bytes_as_the_table_path(monkeypatch, mul, eq):
    """Many lines go through `prime_kernel.write_lines` when numba is installed (the `fast` extra); it must equal the
    numpy table path byte for byte, every digit count, zero-padded edge values included."""
    pytest.importorskip("numba")
    from hf_experiments.arrows import primes

    assert primes._compiled_kernel() is not None
    rng = np.random.default_rng(0)
    for d in range(1, 10):
        edges = np.array([0, 1, 9, 10, 99, 10**d - 1, 10 ** (d - 1)], dtype=np.int64) % 10**d
        p = np.concatenate([edges, rng.integers(0, 10**d, 3000)])
        q = np.concatenate([edges[::-1], rng.integers(0, 10**d, 3000)])
        monkeypatch.setattr(primes, "KERNEL_MIN_LINES", 10**12)
        table = format_prime_lines(p, q, d, mul, eq)
        monkeypatch.setattr(primes, "KERNEL_MIN_LINES", 0)
        compiled = format_prime_lines(p, q, d, mul, eq)
        assert compiled.dtype == table.dtype and np.array_equal(compiled, table), d


def test_pairs_are_distinct_and_uniform_over_primes():
    primes = primes_in_digit_range(1, 2)  # 25 primes
    p, q = sample_prime_pairs(50_000, 1, 2, np.random.default_rng(0), pair_order="random")
    assert (p != q).all()
    assert np.isin(p, primes).all() and np.isin(q, primes).all()
    for side in (p, q):
        counts = np.bincount(np.searchsorted(primes, side), minlength=len(primes))
        expected = len(side) / len(primes)
        sigma = np.sqrt(expected * (1 - 1 / len(primes)))
        assert np.abs(counts - expected).max() < 5 * sigma
    # every ordered pair of distinct primes occurs (25 * 24 = 600 pairs, ~83 draws each)
    assert len(set(zip(p.tolist(), q.tolist()))) == 600


def test_smaller_prime_first_by_default_as_the_original_from_the_same_draws():
    """The original wrote `min * max`: the same unordered pairs, ordered; `pair_order="random"` keeps both."""
    p, q = sample_prime_pairs(50_000, 1, 2, np.random.default_rng(0))
    rp, rq = sample_prime_pairs(50_000, 1, 2, np.random.default_rng(0), pair_order="random")
    assert (p < q).all() and (rp > rq).mean() == pytest.approx(0.5, abs=0.02)  # negative control: both ways
    assert np.array_equal(p, np.minimum(rp, rq)) and np.array_equal(q, np.maximum(rp, rq))
    assert len(set(zip(p.tolist(), q.tolist()))) == 300  # every unordered pair of the 25 primes
    lines = format_prime_lines(p[:100], q[:100], 2)
    assert all(parse_prime_line(x)[0] < parse_prime_line(x)[1] for x in lines)
    with pytest.raises(ValueError, match="pair_order"):
        sample_prime_pairs(10, 1, 2, np.random.default_rng(0), pair_order="larger_first")


def test_deterministic_by_seed():
    a = generate_prime_lines(1000, 1, 5, seed=3)
    assert np.array_equal(a, generate_prime_lines(1000, 1, 5, seed=3))
    assert (a != generate_prime_lines(1000, 1, 5, seed=4)).mean() > 0.9


def test_heldout_partition_is_respected_and_unordered():
    rng = np.random.default_rng(0)
    p, q = sample_prime_pairs(20_000, 1, 4, rng, heldout_fraction=0.1)
    assert not heldout_pair_mask(p, q, 0.1).any()
    vp, vq = sample_prime_pairs(2_000, 1, 4, rng, heldout_fraction=0.1, heldout=True)
    assert heldout_pair_mask(vp, vq, 0.1).all() and heldout_pair_mask(vq, vp, 0.1).all()
    assert (vp != vq).all()
    train_pairs = set(zip(np.minimum(p, q).tolist(), np.maximum(p, q).tolist()))
    assert not train_pairs & set(zip(np.minimum(vp, vq).tolist(), np.maximum(vp, vq).tolist()))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_pairs": 5, "min_n_digits": 0, "max_n_digits": 3}, "min_n_digits"),
        ({"n_pairs": 5, "min_n_digits": 4, "max_n_digits": 3}, "max_n_digits"),
        ({"n_pairs": 5, "min_n_digits": 1, "max_n_digits": 10}, "max_n_digits"),
        ({"n_pairs": -1, "min_n_digits": 1, "max_n_digits": 3}, "n_pairs"),
        (
            {"n_pairs": 5, "min_n_digits": 1, "max_n_digits": 1, "heldout_fraction": 1e-9, "heldout": True},
            "heldout_fraction",
        ),
    ],
)
def test_bad_parameters_raise_value_error(kwargs, match):
    n = kwargs.pop("n_pairs")
    with pytest.raises(ValueError, match=match):
        sample_prime_pairs(n, rng=np.random.default_rng(0), **kwargs)


def test_spaces_must_not_break_parsing():
    with pytest.raises(ValueError, match="eq_space"):
        format_prime_lines(np.array([2]), np.array([3]), 1, eq_space=" = ")


def test_cli_writes_a_loadable_disjoint_reproducible_dataset(tmp_path):
    make_primes = _load_script("make_primes")
    args = [
        "--n_pairs",
        "3000",
        "--min_n_digits",
        "1",
        "--max_n_digits",
        "3",
        "--val_fraction",
        "0.2",
        "--n_val",
        "300",
        "--seed",
        "5",
    ]
    assert make_primes.main(["--out", str(tmp_path / "a"), *args]) == 0
    ds = load_dataset(str(tmp_path / "a"))
    assert ds["train"].num_rows == 3000 and ds["validation"].num_rows == 300
    for split in ds.values():
        for row in split.select(range(50)):
            assert row["text"] == _reference_line(row["p"], row["q"], 3)
    key = lambda s: set(zip(np.minimum(s["p"], s["q"]).tolist(), np.maximum(s["p"], s["q"]).tolist()))
    train, val = ds["train"].with_format("numpy"), ds["validation"].with_format("numpy")
    assert not key(train) & key(val)
    params = read_card_params(tmp_path / "a")
    assert params["n_pairs"] == 3000 and params["max_n_digits"] == 3 and params["product_width"] == 6
    assert params["val_fraction"] == 0.2 and params["validation_disjoint"] is True

    make_primes.main(["--out", str(tmp_path / "b"), *args])
    make_primes.main(["--out", str(tmp_path / "c"), *args[:-1], "6"])
    parquet = "data/train-00000-of-00001.parquet"
    assert (tmp_path / "a" / parquet).read_bytes() == (tmp_path / "b" / parquet).read_bytes()
    assert (tmp_path / "a" / parquet).read_bytes() != (tmp_path / "c" / parquet).read_bytes()
    with pytest.raises(ValueError, match="overwrite"):
        make_primes.main(["--out", str(tmp_path / "a"), *args])
