"""GF(2) linear languages: matrices, inverses and M v agree with `galois`; flips have the asked rate."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import importlib.util
from pathlib import Path

import galois
import numpy as np
import pytest
from datasets import load_dataset

from hf_experiments.arrows.linear_language import (
    extra_ones,
    flip_entries,
    format_bit_lines,
    generate_linear_lines,
    generate_linear_sample,
    gf2_inverse,
    gf2_matvec,
    gf2_rank,
    is_invertible,
    make_sparse_invertible,
    matrix_name,
    pack_bits,
    parse_bit_line,
    sample_vectors,
    unpack_bits,
)
from hf_experiments.core.dataset_io import heldout_mask, read_card_params

GF2 = galois.GF(2)
ROOT = Path(__file__).resolve().parents[2]


def _galois_matvec(M: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """(N, n) 0/1 rows -> rows of M v over GF(2), computed by galois."""
    return np.asarray((GF2(M) @ GF2(bits).T).T, dtype=np.uint8)


def _parse_all(lines: np.ndarray, sep: str = "_______") -> tuple[np.ndarray, np.ndarray]:
    pairs = [parse_bit_line(line, sep) for line in lines]
    return np.array([a for a, _ in pairs]), np.array([b for _, b in pairs])


def _random_invertible(n: int, rng: np.random.Generator) -> np.ndarray:
    while True:
        M = rng.integers(0, 2, size=(n, n), dtype=np.uint8)
        if np.linalg.matrix_rank(GF2(M)) == n:
            return M


@pytest.mark.parametrize("n", [1, 2, 7, 20, 33, 70])
def test_inverse_matches_galois(n):
    rng = np.random.default_rng(n)
    for _ in range(3):
        M = _random_invertible(n, rng)
        inv = gf2_inverse(M)
        assert np.array_equal(inv, np.asarray(np.linalg.inv(GF2(M))))
        assert np.array_equal((M.astype(int) @ inv) % 2, np.eye(n, dtype=int))


def test_rank_matches_galois_and_singular_inverse_raises():
    rng = np.random.default_rng(0)
    for n in (3, 9, 16):
        for _ in range(10):
            M = rng.integers(0, 2, size=(n, n), dtype=np.uint8)
            assert gf2_rank(M) == np.linalg.matrix_rank(GF2(M))
    singular = np.array([[1, 1, 0], [0, 1, 1], [1, 0, 1]], dtype=np.uint8)  # rows sum to 0 mod 2
    assert not is_invertible(singular)
    with pytest.raises(ValueError, match="singular"):
        gf2_inverse(singular)
    with pytest.raises(ValueError, match="0 and 1"):
        gf2_inverse(np.array([[2]]))


@pytest.mark.parametrize("n, k", [(20, 0), (20, 6), (20, 60), (5, 12), (8, 3)])
def test_sparse_invertible_has_k_extra_ones_and_its_name_records_the_inverse(n, k):
    M = make_sparse_invertible(n, k, np.random.default_rng(k))
    assert M.dtype == np.uint8 and np.diag(M).all()
    assert extra_ones(M) == k == int(M.sum()) - n
    assert np.linalg.matrix_rank(GF2(M)) == n
    k_inv = int(np.asarray(np.linalg.inv(GF2(M))).sum()) - n
    assert matrix_name(n, extra_ones(M), extra_ones(gf2_inverse(M))) == f"Matid{n}_{k}_{k_inv}"


def test_sparse_invertible_rejects_impossible_k():
    with pytest.raises(ValueError, match="k=21"):
        make_sparse_invertible(5, 21, np.random.default_rng(0))
    with pytest.raises(RuntimeError, match="no invertible"):
        make_sparse_invertible(3, 6, np.random.default_rng(0))  # the all-ones matrix is singular


def test_flip_entries_changes_exactly_the_asked_off_diagonal_entries():
    rng = np.random.default_rng(0)
    M = make_sparse_invertible(20, 6, rng)
    for num_flips in (1, 4, 30):
        flipped = flip_entries(M, num_flips, rng)
        diff = flipped != M
        assert diff.sum() == num_flips and not np.diag(diff).any()
        assert np.linalg.matrix_rank(GF2(flipped)) == 20


@pytest.mark.parametrize("n", [1, 13, 20, 64])
def test_packed_matvec_matches_galois(n):
    rng = np.random.default_rng(n)
    M = _random_invertible(n, rng)
    bits = rng.integers(0, 2, size=(500, n), dtype=np.uint8)
    v = pack_bits(bits)
    assert np.array_equal(unpack_bits(v, n), bits)
    assert np.array_equal(unpack_bits(gf2_matvec(M, v), n), _galois_matvec(M, bits))


def test_bit_order_character_i_is_coordinate_i():
    assert pack_bits(np.array([[1, 0, 0, 1]]))[0] == 0b1001
    line = format_bit_lines(np.array([0b0001], np.uint64), np.array([0b0110], np.uint64), 4, sep="|")[0]
    assert line == b"1000|0110"
    shift = np.eye(4, k=-1, dtype=np.uint8)  # (M v)_i = v_{i-1}: moves coordinate 0 to coordinate 1
    shift[0, 3] = 1  # cyclic, so invertible
    lines = generate_linear_lines(shift, 50, 0.0, seed=0, sep="|")
    for x, y in zip(*_parse_all(lines, "|")):
        assert np.array_equal(y, np.roll(x, 1))


def test_lines_without_flips_are_exactly_m_times_the_input():
    M = make_sparse_invertible(20, 6, np.random.default_rng(1))
    lines = generate_linear_lines(M, 2000, 0.0, seed=0)
    assert lines.dtype.itemsize == 2 * 20 + 7
    x, y = _parse_all(lines)
    assert np.array_equal(y, _galois_matvec(M, x))
    assert np.array_equal(x, _galois_matvec(gf2_inverse(M), y))


@pytest.mark.parametrize("rate", [0.01, 0.2])
def test_flip_rate_within_five_sigma_and_lines_match_sample(rate):
    n, num = 20, 20_000
    M = make_sparse_invertible(n, 6, np.random.default_rng(2))
    s = generate_linear_sample(M, num, rate, seed=7)
    assert np.array_equal(unpack_bits(s.mv, n), _galois_matvec(M, unpack_bits(s.v, n)))
    sigma = np.sqrt(rate * (1 - rate) / (num * n))
    e_in, e_out = unpack_bits(s.x ^ s.v, n), unpack_bits(s.y ^ s.mv, n)
    for e in (e_in, e_out):
        assert abs(e.mean() - rate) < 5 * sigma
        assert abs(e.mean(axis=0) - rate).max() < 5 * np.sqrt(rate * (1 - rate) / num)  # every coordinate
    both = (e_in & e_out).mean()  # independence of e and e'
    assert abs(both - rate**2) < 5 * np.sqrt(rate**2 * (1 - rate**2) / (num * n))
    x, y = _parse_all(generate_linear_lines(M, num, rate, seed=7)[:300])
    assert np.array_equal(x, unpack_bits(s.x[:300], n)) and np.array_equal(y, unpack_bits(s.y[:300], n))


def test_deterministic_by_seed():
    M = make_sparse_invertible(20, 6, np.random.default_rng(0))
    a = generate_linear_lines(M, 1000, 0.01, seed=0)
    assert np.array_equal(a, generate_linear_lines(M, 1000, 0.01, seed=0))
    assert (a != generate_linear_lines(M, 1000, 0.01, seed=1)).mean() > 0.9
    # the flips draw from their own stream: changing the rate keeps the clean vectors
    assert np.array_equal(generate_linear_sample(M, 100, 0.0, 3).v, generate_linear_sample(M, 100, 0.3, 3).v)


@pytest.mark.parametrize("n", [12, 30])  # enumerated partition, and rejection sampling
def test_heldout_vectors_are_respected(n):
    rng = np.random.default_rng(0)
    train = sample_vectors(n, 5000, rng, heldout_fraction=0.1)
    val = sample_vectors(n, 500, rng, heldout_fraction=0.1, heldout=True)
    assert not heldout_mask(train, 0.1, salt=n).any() and heldout_mask(val, 0.1, salt=n).all()
    assert not set(train.tolist()) & set(val.tolist())
    assert train.max() < 2**n and val.max() < 2**n
    with pytest.raises(ValueError, match="heldout_fraction"):
        sample_vectors(2, 5, rng, heldout_fraction=1e-9, heldout=True)  # 4 vectors, none held out


def test_generation_rejects_bad_parameters():
    M = make_sparse_invertible(4, 1, np.random.default_rng(0))
    with pytest.raises(ValueError, match="perturbation_rate"):
        generate_linear_lines(M, 10, 1.5, seed=0)
    with pytest.raises(ValueError, match="n=65"):
        generate_linear_lines(np.eye(65, dtype=np.uint8), 10, 0.0, seed=0)
    with pytest.raises(ValueError, match="sep"):
        generate_linear_lines(M, 10, 0.0, seed=0, sep="_0_")


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "data_scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_names_dataset_after_matrix_and_stores_it(tmp_path):
    make_linear = _load_script("make_linear")
    args = [
        "--n",
        "12",
        "--k",
        "5",
        "--num_vectors",
        "2000",
        "--n_val",
        "200",
        "--val_fraction",
        "0.1",
        "--perturbation_rate",
        "0",
    ]
    assert make_linear.main(["--out", str(tmp_path / "{name}"), *args]) == 0
    (folder,) = tmp_path.iterdir()
    M, M_inv = np.load(folder / "matrix.npy"), np.load(folder / "matrix_inv.npy")
    assert np.array_equal((M.astype(int) @ M_inv) % 2, np.eye(12, dtype=int))
    assert folder.name == f"Matid12_5_{int(M_inv.sum()) - 12}_v2k_pert0"
    params = read_card_params(folder)
    assert params["matrix_name"] == folder.name.split("_v")[0] and params["k"] == 5

    ds = load_dataset(str(folder))
    assert ds["train"].num_rows == 2000 and ds["validation"].num_rows == 200
    for split in ds.values():
        x, y = _parse_all(split["text"])
        assert np.array_equal(y, _galois_matvec(M, x))  # rate 0: exact
    train_x = set(map(tuple, _parse_all(ds["train"]["text"])[0].tolist()))
    val_x = set(map(tuple, _parse_all(ds["validation"]["text"])[0].tolist()))
    assert not train_x & val_x

    # Same matrix from file, same seed -> identical parquet bytes; a sparse update changes M and the data.
    again = tmp_path / "again"
    make_linear.main(["--out", str(again), "--matrix", str(folder / "matrix.npy"), *args[4:]])
    parquet = "data/train-00000-of-00001.parquet"
    assert (again / parquet).read_bytes() == (folder / parquet).read_bytes()
    flipped = tmp_path / "flipped"
    make_linear.main(["--out", str(flipped), "--matrix", str(folder / "matrix.npy"), "--num_flips", "2", *args[4:]])
    assert (np.load(flipped / "matrix.npy") != M).sum() == 2
    assert (flipped / parquet).read_bytes() != (folder / parquet).read_bytes()
