"""Repeat-sequence data: unique splits, validation never in training, lengths/symbols as asked, reproducible,
loadable, and the collator's padding round-trips."""

from __future__ import annotations

import numpy as np
import pytest
from datasets import load_dataset

from hf_experiments.core.dataset_io import read_card_params
from hf_experiments.recurrent.repeat_data import (
    RepeatCollator,
    RepeatDataSpec,
    generate_repeat_dataset,
    generate_splits,
    sample_sequences,
    sequence_keys,
)

SPEC = RepeatDataSpec(n_symbols=6, min_len=2, max_len=5, n_train=3000, n_valid=300, n_valid_extra=100, seed=3)


def _rows(table) -> list[tuple[int, ...]]:
    return [tuple(r) for r in table.column("input_ids").to_pylist()]


@pytest.fixture(scope="module")
def splits():
    return generate_splits(SPEC)


def test_splits_are_unique_and_validation_never_in_training(splits):
    train = set(_rows(splits["train"]))
    assert len(train) == SPEC.n_train
    for name, table in splits.items():
        rows = _rows(table)
        assert len(set(rows)) == len(rows), name
        if name != "train":
            assert not train & set(rows), name


def test_lengths_symbols_and_repeats(splits):
    assert set(splits) == {
        "train",
        "valid",
        "valid_norepeat",
        "valid_longer_1",
        "valid_longer_2",
        "valid_longer_1_norepeat",
    }
    for name, table in splits.items():
        rows = _rows(table)
        lengths = table.column("length").to_numpy()
        assert [len(r) for r in rows] == lengths.tolist()
        assert all(0 <= s < SPEC.n_symbols for r in rows for s in r)
        lo, hi = {"valid_longer_1": (6, 6), "valid_longer_2": (7, 7), "valid_longer_1_norepeat": (6, 6)}.get(
            name, (SPEC.min_len, SPEC.max_len)
        )
        assert lengths.min() >= lo and lengths.max() <= hi, name
        if name.endswith("norepeat"):
            assert all(len(set(r)) == len(r) for r in rows), name
    assert any(len(set(r)) < len(r) for r in _rows(splits["train"]))  # repeats do occur when allowed


def test_short_lengths_saturate_at_their_training_share(splits):
    """Length 2 has 36 sequences; ~80% are training ones, and rejection sampling cannot exceed them."""
    n_len2 = int((splits["train"].column("length").to_numpy() == 2).sum())
    assert 0.6 * 36 <= n_len2 <= 36


def test_generation_is_reproducible_and_seeded(splits):
    again = generate_splits(SPEC)
    assert all(_rows(again[k]) == _rows(v) for k, v in splits.items())
    other = generate_splits(RepeatDataSpec(**{**SPEC.__dict__, "seed": 4}))
    assert _rows(other["valid"]) != _rows(splits["valid"])


def test_heldout_part_is_the_same_for_every_seed_and_length_range():
    """Held-out membership is a function of the sequence only: a valid set of one dataset never appears in the
    training set of another (different seed, wider lengths)."""
    t1, l1 = sample_sequences(30, 6, 3, 3, seed=1, heldout=True, heldout_fraction=0.2)
    t2, l2 = sample_sequences(1100, 6, 2, 4, seed=9, heldout=False, heldout_fraction=0.2)
    k1, k2 = sequence_keys(t1, l1), sequence_keys(t2, l2)
    assert not np.isin(k1, k2).any()


def test_keys_depend_on_length_and_tokens_not_on_padding():
    tok = np.array([[0, 0, -1], [0, 0, 0], [0, 0, 5], [1, 0, -1]])
    keys = sequence_keys(tok, np.array([2, 3, 2, 2]))
    assert keys[0] == keys[2]  # padding content is ignored
    assert len({keys[0], keys[1], keys[3]}) == 3


def test_too_many_sequences_is_a_clear_error():
    with pytest.raises(ValueError, match="distinct sequences"):
        sample_sequences(40, 3, 1, 3, seed=0, heldout=False, heldout_fraction=0.2)
    with pytest.raises(ValueError, match="with_repeats"):
        RepeatDataSpec(n_symbols=4, max_len=5, min_len=2, with_repeats=False).check()


def test_dataset_folder_round_trip(tmp_path, splits):
    out = generate_repeat_dataset(tmp_path / "rep", SPEC)
    ds = load_dataset(str(out))
    assert set(ds) == set(splits)
    assert [tuple(r) for r in ds["valid"]["input_ids"]] == _rows(splits["valid"])
    assert read_card_params(out)["n_train"] == SPEC.n_train


def test_make_repeat_script(tmp_path):
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parents[2] / "data_scripts" / "make_repeat.py"
    spec = importlib.util.spec_from_file_location("make_repeat", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert (
        mod.main(
            [
                "--out",
                str(tmp_path / "d"),
                "--n_symbols",
                "5",
                "--min_len",
                "2",
                "--max_len",
                "3",
                "--n_train",
                "50",
                "--n_valid",
                "10",
                "--n_valid_extra",
                "5",
                "--with_repeats",
                "false",
            ]
        )
        == 0
    )
    ds = load_dataset(str(tmp_path / "d"))
    assert all(len(set(r)) == len(r) for r in ds["train"]["input_ids"])
    assert mod.main(["--out", str(tmp_path / "e"), "--n_symbols", "2", "--max_len", "2", "--min_len", "1"]) == 2


def test_collator_pads_and_labels():
    rows = [{"input_ids": [3, 1, 4], "length": 3}, {"input_ids": [5], "length": 1}]
    batch = RepeatCollator()(rows)
    assert batch["input_ids"].tolist() == [[3, 1, 4], [5, 0, 0]]
    assert batch["labels"].tolist() == [[3, 1, 4], [5, -100, -100]]
    assert batch["length"].tolist() == [3, 1]
