"""The embedded corpus, text dataset loading and token windowing (hf_experiments.compression.corpus / .text_data)."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before datasets/huggingface_hub read it

import json
import re
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from datasets import Dataset

from hf_experiments.compression.backbones import _train_tokenizer
from hf_experiments.compression.corpus import MIN_DOC_CHARS, build_stdlib_corpus, embedded_corpus
from hf_experiments.compression.text_data import hash_split, load_text_dataset, window_dataset


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """A private package cache for this module (the corpus is built into it once)."""
    path = tmp_path_factory.mktemp("hfx_cache")
    old = os.environ.get("HF_EXPERIMENTS_CACHE")
    os.environ["HF_EXPERIMENTS_CACHE"] = str(path)
    yield path
    if old is None:
        del os.environ["HF_EXPERIMENTS_CACHE"]
    else:
        os.environ["HF_EXPERIMENTS_CACHE"] = old


@pytest.fixture(scope="module")
def corpus(cache_dir):
    return embedded_corpus()


@pytest.fixture(scope="module")
def tokenizer(corpus):
    """A small byte-level BPE trained on a corpus prefix (the same recipe as the builtin backbones)."""
    return _train_tokenizer(embedded_corpus(100_000), vocab_size=400, max_len=64, progress=False)


def _reference_stream(texts, tokenizer) -> np.ndarray:
    """The document stream window_dataset must cut: doc tokens, EOS, doc tokens, EOS, ... (a plain loop)."""
    out = []
    for t in texts:
        out += tokenizer(t, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return np.array(out)


# ---------------------------------------------------------------- corpus


def test_corpus_cached_deterministic_and_nontrivial(corpus, cache_dir):
    assert list((cache_dir / "corpus").glob("*.parquet")), "the corpus was not cached"
    assert embedded_corpus() == corpus  # second call: from the cache, identical
    total = sum(map(len, corpus))
    assert len(corpus) > 1000 and total > 1_000_000
    text = "".join(corpus)
    letters = len(re.sub(r"[^A-Za-z]", "", text))
    assert letters / total > 0.6  # mostly English prose, not code or binary
    words = text.lower().split()
    assert words.count("the") / len(words) > 0.02  # English function words are frequent
    assert all(len(d) >= MIN_DOC_CHARS and d == d.strip() and "\n\n\n" not in d for d in corpus)


def test_corpus_extraction_is_deterministic_and_in_file_order(corpus):
    # A fresh extraction of one stdlib package, twice: identical, and a contiguous block of the full corpus
    # (files are read in sorted order, docstrings in source order).
    sub_dir = Path(sysconfig.get_paths()["stdlib"]) / "json"
    sub = build_stdlib_corpus(sub_dir)
    assert sub == build_stdlib_corpus(sub_dir) and len(sub) >= 5
    start = corpus.index(sub[0])
    assert corpus[start : start + len(sub)] == sub


def test_corpus_max_chars_is_a_prefix(corpus):
    small = embedded_corpus(5000)
    assert sum(map(len, small)) == 5000
    assert small[:-1] == corpus[: len(small) - 1]
    assert corpus[len(small) - 1].startswith(small[-1])
    with pytest.raises(ValueError, match="max_chars"):
        embedded_corpus(0)


# ---------------------------------------------------------------- windowing


@pytest.mark.parametrize("window_len,stride", [(32, None), (32, 8), (17, 17), (16, 40)])
def test_windows_are_consecutive_spans_of_the_document_stream(corpus, tokenizer, window_len, stride):
    texts = corpus[:150]
    windows = np.array(window_dataset(Dataset.from_dict({"text": texts}), tokenizer, window_len, stride)["input_ids"])
    ref = _reference_stream(texts, tokenizer)
    step = stride or window_len
    n_expected = (len(ref) - window_len) // step + 1
    assert windows.shape == (n_expected, window_len)  # (N_windows, window_len): every row exactly window_len
    starts = np.arange(n_expected)[:, None] * step + np.arange(window_len)[None, :]
    np.testing.assert_array_equal(windows, ref[starts])
    if step < window_len:  # consecutive windows share window_len - stride tokens (the seed's seq_overlap)
        np.testing.assert_array_equal(windows[1:, : window_len - step], windows[:-1, step:])
    # decoding gives back the original text (documents joined by the EOS token)
    joined = "".join(t + tokenizer.eos_token for t in texts)
    for w in windows[:: max(1, len(windows) // 10)]:
        assert tokenizer.decode(w) in joined


def test_windows_across_map_batches_and_processes_are_spans(corpus, tokenizer):
    # > 1000 documents: several map batches (and two worker processes); every window is still a contiguous
    # span of the joined text, and little is lost at the batch/shard seams.
    texts = [d[:120] for d in corpus[:2100]]
    joined = "".join(t + tokenizer.eos_token for t in texts)
    ds = Dataset.from_dict({"text": texts})
    for num_proc in (None, 2):
        windows = window_dataset(ds, tokenizer, 24, num_proc=num_proc)["input_ids"]
        assert all(len(w) == 24 for w in windows)
        assert all(tokenizer.decode(w) in joined for w in windows)
        n_full = len(_reference_stream(texts, tokenizer)) // 24
        assert n_full - 4 <= len(windows) <= n_full


def test_window_cache_is_reused(corpus, tokenizer, tmp_path):
    ds = Dataset.from_dict({"text": corpus[:50]})
    first = window_dataset(ds, tokenizer, 32, cache_dir=str(tmp_path))
    files = sorted(tmp_path.glob("windows-*.arrow"))
    assert len(files) == 1 and first.cache_files[0]["filename"] == str(files[0])
    mtime = files[0].stat().st_mtime_ns
    again = window_dataset(Dataset.from_dict({"text": corpus[:50]}), tokenizer, 32, cache_dir=str(tmp_path))
    assert again.cache_files[0]["filename"] == str(files[0]) and files[0].stat().st_mtime_ns == mtime
    assert again["input_ids"][:] == first["input_ids"][:]
    window_dataset(ds, tokenizer, 32, stride=16, cache_dir=str(tmp_path))  # other parameters: another file
    assert len(list(tmp_path.glob("windows-*.arrow"))) == 2


def test_window_bad_arguments(tokenizer):
    ds = Dataset.from_dict({"text": ["hello world"]})
    with pytest.raises(ValueError, match="window_len"):
        window_dataset(ds, tokenizer, 0)
    with pytest.raises(ValueError, match="stride"):
        window_dataset(ds, tokenizer, 8, stride=0)
    with pytest.raises(ValueError, match="'text' column"):
        window_dataset(Dataset.from_dict({"body": ["x"]}), tokenizer, 8)


# ---------------------------------------------------------------- loading


def test_embedded_dataset_splits_partition_the_corpus(corpus):
    dd = load_text_dataset("embedded", None, val_fraction=0.05, seed=0)
    assert set(dd) == {"train", "validation"}
    assert dd["train"].column_names == ["text"] == dd["validation"].column_names
    assert abs(len(dd["validation"]) - 0.05 * len(corpus)) < 4 * (0.05 * len(corpus)) ** 0.5  # a hash split
    assert sorted(list(dd["train"]["text"]) + list(dd["validation"]["text"])) == sorted(corpus)
    # by document hash: the seed does not move it, a smaller fraction holds out a subset of the same documents
    assert load_text_dataset("embedded", None, seed=1)["validation"]["text"][:] == dd["validation"]["text"][:]
    smaller = set(load_text_dataset("embedded", None, val_fraction=0.02)["validation"]["text"])
    assert 0 < len(smaller) < len(dd["validation"]) and smaller <= set(dd["validation"]["text"])
    # a document's side depends on its text alone: the same split of any subset of the corpus
    part = hash_split(Dataset.from_dict({"text": corpus[::3]}), 0.05)
    assert set(part["validation"]["text"]) == set(dd["validation"]["text"]) & set(corpus[::3])


def test_windows_carry_their_documents_and_an_optional_bos(tokenizer):
    texts = ["alpha beta gamma delta " * 5, "one two three " * 7, "x y z " * 9]
    ds = Dataset.from_dict({"text": texts})
    plain = window_dataset(ds, tokenizer, 8)
    with_bos = window_dataset(ds, tokenizer, 8, stride=7, bos_id=3)
    stream = []
    for i, t in enumerate(texts):
        stream += [(tok, i) for tok in tokenizer(t, add_special_tokens=False)["input_ids"]] + [
            (tokenizer.eos_token_id, i)
        ]
    for row, doc in zip(plain["input_ids"], plain["doc_id"]):  # doc_id = the document of the window's first token
        start = next(k for k in range(len(stream)) if [t for t, _ in stream[k : k + 8]] == row)
        assert stream[start][1] == doc
    assert sorted(set(plain["doc_id"])) == [0, 1, 2]
    assert all(r[0] == 3 for r in with_bos["input_ids"])  # BOS + 7 stream tokens, consecutive windows adjacent
    body = [t for r in with_bos["input_ids"] for t in r[1:]]
    assert body == [t for t, _ in stream][: len(body)]


def test_local_txt_files(tmp_path):
    paras = [f"Paragraph {i} first line.\nSecond line of paragraph {i}." for i in range(12)]
    (tmp_path / "a.txt").write_text("\n\n".join(paras[:7]) + "\n")
    (tmp_path / "b.txt").write_text("\n\n\n".join(paras[7:]))
    dd = load_text_dataset(
        "embedded",
        [str(tmp_path / "a.txt"), str(tmp_path / "b.txt")],
        val_fraction=0.25,
        cache_dir=str(tmp_path / "hf"),
    )
    assert len(dd["validation"]) == 3
    assert sorted(list(dd["train"]["text"]) + list(dd["validation"]["text"])) == sorted(paras)


def test_local_jsonl_with_text_column(tmp_path):
    rows = [{"id": i, "body": f"document number {i}"} for i in range(20)] + [{"id": 99, "body": ""}]
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    dd = load_text_dataset("embedded", [str(path)], text_column="body", cache_dir=str(tmp_path / "hf"))
    assert dd["train"].column_names == ["text"]
    assert sorted(list(dd["train"]["text"]) + list(dd["validation"]["text"])) == sorted(r["body"] for r in rows[:20])
    with pytest.raises(ValueError, match=r"text_column='content'.*available"):
        load_text_dataset("embedded", [str(path)], text_column="content", cache_dir=str(tmp_path / "hf"))


def test_local_file_errors(tmp_path):
    missing = tmp_path / "nope.txt"
    with pytest.raises(ValueError, match=str(missing)):
        load_text_dataset("embedded", [str(missing)])
    (tmp_path / "a.txt").write_text("x")
    (tmp_path / "b.csv").write_text("text\nx\n")
    with pytest.raises(ValueError, match="one suffix"):
        load_text_dataset("embedded", [str(tmp_path / "a.txt"), str(tmp_path / "b.csv")])
    (tmp_path / "c.xml").write_text("<x/>")
    with pytest.raises(ValueError, match="one suffix"):
        load_text_dataset("embedded", [str(tmp_path / "c.xml")])


@pytest.mark.parametrize("name", ["openwebtext", "glue"])
def test_hub_datasets_offline_error(name, tmp_path):
    with pytest.raises(ConnectionError, match=f"dataset='{name}' needs the Hugging Face Hub, which is unreachable"):
        load_text_dataset(name, None, cache_dir=str(tmp_path))


def test_bad_dataset_arguments():
    with pytest.raises(ValueError, match="dataset='wikitext' is unknown"):
        load_text_dataset("wikitext", None)
    with pytest.raises(ValueError, match="val_fraction"):
        load_text_dataset("embedded", None, val_fraction=1.0)
