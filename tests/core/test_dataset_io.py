"""Folders written by `write_dataset` load with `datasets`, reproduce byte for byte, and keep their params.

Also covers the held-out hash partition and the `.h5` token reader.
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"

from pathlib import Path

import h5py
import numpy as np
import pytest
from datasets import load_dataset

from hf_experiments.arrows.h5_tokens import h5_attrs, h5_to_dataset
from hf_experiments.arrows.primes import generate_prime_lines
from hf_experiments.core.dataset_io import heldout_mask, read_card_params, write_dataset


def _splits(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    lines = np.array([f"line {i} {rng.integers(1000)}".encode() for i in range(50)])  # S<L>, ragged
    fixed = np.frombuffer(rng.integers(97, 123, size=50 * 7, dtype=np.uint8).tobytes(), dtype="S7")
    return {
        "train": {
            "text": lines,
            "fixed": fixed,
            "x": rng.integers(0, 9, 50),
            "ids": rng.integers(0, 5, (50, 4)),
        },
        "validation": {
            "text": lines[:5],
            "fixed": fixed[:5],
            "x": np.arange(5),
            "ids": np.zeros((5, 4), int),
        },
    }


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_load_dataset_round_trips_every_column(tmp_path):
    splits = _splits()
    out = write_dataset(tmp_path / "ds", splits, {"seed": 0}, "A test dataset.")
    ds = load_dataset(str(out))
    assert set(ds) == {"train", "validation"}
    for name, cols in splits.items():
        assert ds[name]["text"] == [s.decode() for s in cols["text"]]
        assert ds[name]["fixed"] == [s.decode() for s in cols["fixed"]]
        assert ds[name]["x"] == cols["x"].tolist()
        assert ds[name]["ids"] == cols["ids"].tolist()


def test_nul_padded_bytes_keep_numpy_semantics(tmp_path):
    ragged = np.array([b"a", b"abc", b""])  # dtype S3: "a" and "" are NUL-padded in the buffer
    out = write_dataset(tmp_path / "ds", {"train": {"text": ragged}}, {}, "ragged")
    assert load_dataset(str(out))["train"]["text"] == ["a", "abc", ""]


def test_same_input_gives_same_bytes_and_other_input_differs(tmp_path):
    def write(name: str, seed: int) -> dict[str, bytes]:
        return _files(
            write_dataset(tmp_path / name, _splits(seed), {"seed": 0}, "d", title="t", extra_files={"m.bin": b"\x01"})
        )

    a, b, c = write("a", 0), write("b", 0), write("c", 1)
    assert set(a) == {
        "README.md",
        "m.bin",
        "data/train-00000-of-00001.parquet",
        "data/validation-00000-of-00001.parquet",
    }
    assert a == b
    assert a["data/train-00000-of-00001.parquet"] != c["data/train-00000-of-00001.parquet"]


def test_card_params_round_trip(tmp_path):
    params = {
        "n": np.int64(20),
        "rate": np.float32(0.25),
        "digits": (1, 5),
        "nested": {"sep": "___", "ok": True},
        "none": None,
        "name": "Matid20_6_15",
    }
    out = write_dataset(tmp_path / "ds", {"train": {"x": np.arange(3)}}, params, "d")
    assert read_card_params(out) == {
        "n": 20,
        "rate": 0.25,
        "digits": [1, 5],
        "nested": {"sep": "___", "ok": True},
        "none": None,
        "name": "Matid20_6_15",
    }
    with pytest.raises(ValueError, match=r"card_params\.bad"):
        write_dataset(tmp_path / "ds2", {"train": {"x": np.arange(3)}}, {"bad": object()}, "d")
    with pytest.raises(ValueError, match="README"):
        read_card_params(tmp_path)


def test_card_has_the_written_features_splits_license_and_tags(tmp_path):
    import pyarrow.parquet as pq
    import yaml
    from datasets import Features

    splits = _splits()
    out = write_dataset(tmp_path / "ds", splits, {"seed": 0}, "A test dataset.")
    header = (out / "README.md").read_text().split("---\n")[1]
    meta = yaml.safe_load(header)
    info = meta["dataset_info"]
    schema = pq.read_schema(out / "data" / "train-00000-of-00001.parquet")
    # the features are those of the parquet files, in the format `datasets` writes (and reads back)
    assert Features._from_yaml_list(info["features"]) == Features.from_arrow_schema(schema)
    assert {f["name"]: f.get("dtype", f.get("list")) for f in info["features"]} == {
        "text": "string",
        "fixed": "string",
        "x": "int64",
        "ids": "int64",
    }
    assert [(s["name"], s["num_examples"]) for s in info["splits"]] == [("train", 50), ("validation", 5)]
    assert all(s["num_bytes"] > 0 for s in info["splits"]) and info["download_size"] > 0
    assert meta["license"] == "mit"
    assert meta["task_categories"] == ["text-generation"] and "synthetic" in meta["tags"]
    ds = load_dataset(str(out))  # the card's features are what `datasets` loads with
    assert ds["train"].features == Features.from_arrow_schema(schema)
    assert ds["validation"].num_rows == 5


def test_refuses_to_overwrite_unless_asked_and_replaces_everything(tmp_path):
    out = tmp_path / "ds"
    write_dataset(out, {"train": {"x": np.arange(3)}}, {"v": 1}, "d", extra_files={"stale.txt": b"old"})
    assert load_dataset(str(out))["train"]["x"] == [0, 1, 2]  # fills the datasets cache for this folder
    with pytest.raises(ValueError, match="overwrite=True"):
        write_dataset(out, {"train": {"x": np.arange(4)}}, {"v": 2}, "d")
    assert read_card_params(out) == {"v": 1}
    write_dataset(out, {"train": {"x": np.arange(4)}}, {"v": 2}, "d", overwrite=True)
    assert read_card_params(out) == {"v": 2}
    assert not (out / "stale.txt").exists()
    assert load_dataset(str(out))["train"]["x"] == [0, 1, 2, 3]  # the new data, not the cached old copy
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # no temp siblings left behind
    empty = tmp_path / "empty"
    empty.mkdir()
    write_dataset(empty, {"train": {"x": np.arange(2)}}, {}, "d")  # an empty folder is fine without overwrite


def test_failed_write_leaves_previous_dataset_and_no_debris(tmp_path):
    out = tmp_path / "ds"
    write_dataset(out, {"train": {"x": np.arange(3)}}, {"v": 1}, "d")
    before = _files(out)
    with pytest.raises(TypeError):  # fails after the temp folder exists: the payload is not bytes
        write_dataset(out, {"train": {"x": np.arange(4)}}, {"v": 2}, "d", extra_files={"m.npy": 123}, overwrite=True)
    assert _files(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


@pytest.mark.parametrize(
    "splits, match",
    [
        ({}, "splits is empty"),
        ({"train/x": {"x": np.arange(2)}}, "split name"),
        ({"train": {"x": np.arange(2), "y": np.arange(3)}}, "different lengths"),
        ({"train": {"x": np.zeros((2, 2, 2))}}, "dtype"),
    ],
)
def test_bad_splits_raise_value_error(tmp_path, splits, match):
    with pytest.raises(ValueError, match=match):
        write_dataset(tmp_path / "ds", splits, {}, "d")
    assert not (tmp_path / "ds").exists()


def test_extra_files_must_stay_inside_the_folder(tmp_path):
    with pytest.raises(ValueError, match="extra_files"):
        write_dataset(tmp_path / "ds", {"train": {"x": np.arange(2)}}, {}, "d", extra_files={"../evil": b""})


def test_push_to_hub_offline_is_a_clear_error_and_keeps_local_copy(tmp_path):
    out = tmp_path / "ds"
    with pytest.raises(RuntimeError, match="HF_HUB_OFFLINE"):
        write_dataset(out, {"train": {"x": np.arange(2)}}, {"v": 1}, "d", push_to_hub="someone/some-dataset")
    assert read_card_params(out) == {"v": 1}


# ---------------------------------------------------------------------------------------------
# Held-out partition
# ---------------------------------------------------------------------------------------------
def test_heldout_mask_fraction_determinism_and_nesting():
    keys = np.arange(200_000, dtype=np.uint64)
    small, big = heldout_mask(keys, 0.05), heldout_mask(keys, 0.2)
    for mask, f in ((small, 0.05), (big, 0.2)):
        sigma = np.sqrt(f * (1 - f) / len(keys))
        assert abs(mask.mean() - f) < 5 * sigma
    assert np.array_equal(small, heldout_mask(keys, 0.05))  # a function of the key, nothing else
    assert not (small & ~big).any()  # growing the fraction only adds keys
    assert not heldout_mask(keys, 0.0).any() and heldout_mask(keys, 1.0).all()
    assert not np.array_equal(small, heldout_mask(keys, 0.05, salt=7))
    with pytest.raises(ValueError, match="fraction"):
        heldout_mask(keys, 1.5)


# ---------------------------------------------------------------------------------------------
# .h5 token files
# ---------------------------------------------------------------------------------------------
def _write_original_style_h5(path: Path, tokens: np.ndarray) -> None:
    """Mimic the original make_h5: a resizable 1-D int dataset 'tokens', filled in pieces."""
    with h5py.File(path, "w") as f:
        dset = f.create_dataset("tokens", shape=(0,), maxshape=(None,), chunks=(512,), dtype="int")
        for piece in np.array_split(tokens, 3):
            start = dset.shape[0]
            dset.resize((start + len(piece),))
            dset[start:] = piece


def test_h5_stream_of_char_tokens_reads_back_as_the_lines(tmp_path):
    lines = generate_prime_lines(40, 1, 3, seed=0)  # (40,) S<L>
    text = b"".join(line + b"\n" for line in lines).decode()
    vocab = sorted(set(text))
    stream = np.array([vocab.index(c) for c in text])
    path = tmp_path / "primes_1_3.h5"
    _write_original_style_h5(path, stream)
    block = len(lines[0]) + 1  # one line plus its newline per row
    ds = h5_to_dataset(path, block_size=block, id_to_token=vocab)
    assert ds.num_rows == 40
    assert ds["text"] == [line.decode() + "\n" for line in lines]
    assert np.array_equal(np.array(ds["input_ids"]), stream.reshape(40, block))
    cached = h5_to_dataset(path, block_size=block, cache_file=tmp_path / "tokens.arrow")
    assert cached["input_ids"] == ds["input_ids"]


def test_h5_stream_drops_the_incomplete_last_block_and_caps_rows(tmp_path):
    path = tmp_path / "s.h5"
    _write_original_style_h5(path, np.arange(1000))
    ds = h5_to_dataset(path, block_size=64)
    assert ds.num_rows == 1000 // 64
    assert np.array_equal(np.array(ds["input_ids"]), np.arange(15 * 64).reshape(15, 64))
    assert h5_to_dataset(path, block_size=64, max_rows=3).num_rows == 3
    with pytest.raises(ValueError, match="block_size"):
        h5_to_dataset(path)


def test_h5_two_dimensional_rows_and_attrs(tmp_path):
    rows = np.random.default_rng(0).integers(0, 30, size=(7, 11), dtype=np.int32)
    path = tmp_path / "rows.h5"
    with h5py.File(path, "w") as f:
        f.attrs["tokenizer"] = "char"
        f.create_dataset("ids", data=rows).attrs["vocab_size"] = 30
    ds = h5_to_dataset(path, column="input_ids")
    assert np.array_equal(np.array(ds["input_ids"]), rows)
    assert h5_attrs(path) == {"tokenizer": "char", "vocab_size": 30}
    with pytest.raises(ValueError, match="block_size"):
        h5_to_dataset(path, block_size=5)
    with h5py.File(path, "a") as f:
        f.create_dataset("other", data=rows)
    with pytest.raises(ValueError, match="key="):
        h5_to_dataset(path)
    assert h5_to_dataset(path, key="other").num_rows == 7
