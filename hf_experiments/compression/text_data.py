"""Text datasets for language-model training: where the text comes from, and how it is cut into fixed windows.

`load_text_dataset` gives a `DatasetDict(train=..., validation=...)` with one `text` column from the embedded
offline corpus, the Hugging Face Hub (openwebtext, glue) or local files. `window_dataset` turns such a split
into `input_ids` rows of exactly `window_len` tokens, the shape every trainer here consumes.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
from functools import partial
from pathlib import Path

import numpy as np
from datasets import Dataset, DatasetDict, Features, List, Value, concatenate_datasets, load_dataset
from datasets.fingerprint import Hasher

from .corpus import embedded_corpus

logger = logging.getLogger(__name__)

OPENWEBTEXT_HUB_ID = "Skylion007/openwebtext"  # what the legacy id "openwebtext" redirects to
GLUE_HUB_ID = "nyu-mll/glue"
# GLUE configs and their text fields: every sentence-level task (the seed used glue as plain English text).
# A row becomes one document: its fields joined by a newline (premise + hypothesis, question + sentence, ...).
GLUE_TEXT_FIELDS: dict[str, tuple[str, ...]] = {
    "cola": ("sentence",),
    "sst2": ("sentence",),
    "mrpc": ("sentence1", "sentence2"),
    "qqp": ("question1", "question2"),
    "stsb": ("sentence1", "sentence2"),
    "mnli": ("premise", "hypothesis"),
    "qnli": ("question", "sentence"),
    "rte": ("sentence1", "sentence2"),
    "wnli": ("sentence1", "sentence2"),
}
# Local-file suffix -> `datasets` packaged builder.
_BUILDERS = {
    ".txt": "text",
    ".text": "text",
    ".parquet": "parquet",
    ".json": "json",
    ".jsonl": "json",
    ".csv": "csv",
}
_HUB_DATASETS = ("openwebtext", "glue")
WINDOWING_VERSION = 2  # part of the windowing cache key; bump when `_window_batch` changes its output


def hub_offline() -> bool:
    """True when the Hub must not be contacted: `HF_HUB_OFFLINE` set now, or when huggingface_hub loaded."""
    from huggingface_hub.constants import is_offline_mode

    return os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"} or is_offline_mode()


def _hub_unreachable(dataset: str) -> ConnectionError:
    return ConnectionError(
        f"dataset={dataset!r} needs the Hugging Face Hub, which is unreachable "
        "(HF_HUB_OFFLINE=1 or no network); use dataset='embedded' or data_files=[...]"
    )


def _load_hub(dataset: str, *args, cache_dir: str | None = None, **kwargs):
    """`load_dataset` from the Hub (or its local cache when offline), with one clear error when unreachable.

    Datasets still published as loading scripts (which datasets>=4 refuses) are read from the Hub's automatic
    parquet export (`refs/convert/parquet`) instead.
    """
    path = {"openwebtext": OPENWEBTEXT_HUB_ID, "glue": GLUE_HUB_ID}[dataset]
    try:
        try:
            return load_dataset(path, *args, cache_dir=cache_dir, **kwargs)
        except RuntimeError as e:
            if "scripts are no longer supported" not in str(e):
                raise
            return load_dataset(path, *args, cache_dir=cache_dir, revision="refs/convert/parquet", **kwargs)
    except ConnectionError as e:  # datasets raises it for offline mode, DNS failures and timeouts alike
        raise _hub_unreachable(dataset) from e


def _glue_texts(cache_dir: str | None) -> Dataset:
    """All GLUE_TEXT_FIELDS of every config's train split, one document per row."""
    parts = []
    for config, fields in GLUE_TEXT_FIELDS.items():
        ds = _load_hub("glue", config, split="train", cache_dir=cache_dir)
        parts.append(
            ds.map(
                lambda b, f=fields: {"text": ["\n".join(r) for r in zip(*(b[k] for k in f))]},
                batched=True,
                remove_columns=ds.column_names,
                desc=f"glue/{config} text",
            )
        )
    return concatenate_datasets(parts)


def _load_files(data_files: list[str], cache_dir: str | None) -> DatasetDict:
    """Local files through the `datasets` builder matching their suffix (all files must share one)."""
    paths = [Path(f).expanduser() for f in data_files]
    for p in paths:
        if not p.is_file():
            raise ValueError(f"data_files entry {str(p)!r} does not exist or is not a file")
    builders = {_BUILDERS.get(p.suffix.lower()) for p in paths}
    if None in builders or len(builders) != 1:
        raise ValueError(f"data_files={data_files!r} must all have one suffix among {sorted(_BUILDERS)}")
    builder = builders.pop()
    # Text files: one document per blank-line separated paragraph, so line breaks inside a paragraph survive.
    if builder != "text":
        return load_dataset(builder, data_files=[str(p) for p in paths], cache_dir=cache_dir)
    dd = load_dataset(builder, data_files=[str(p) for p in paths], cache_dir=cache_dir, sample_by="paragraph")
    # runs of 3+ newlines leave newlines at paragraph edges: strip them
    return dd.map(
        lambda b: {"text": [t.strip() for t in b]},
        input_columns="text",
        batched=True,
        desc="strip paragraphs",
    )


def _split(ds: Dataset, val_fraction: float, seed: int) -> DatasetDict:
    """Random document-level train/validation split; validation gets at least one document."""
    if len(ds) < 2:
        raise ValueError(
            f"the dataset has {len(ds)} non-empty documents; at least 2 are needed to split off a validation set"
        )
    n_val = min(len(ds) - 1, max(1, round(len(ds) * val_fraction)))
    parts = ds.train_test_split(test_size=n_val, seed=seed, shuffle=True)
    return DatasetDict(train=parts["train"], validation=parts["test"])


def hash_split(ds: Dataset, val_fraction: float) -> DatasetDict:
    """Validation = the documents whose text hashes below `val_fraction` (blake2b of the UTF-8 text).

    Used for the embedded corpus: a document's side does not depend on which other documents exist, so the
    built-in backbone (trained on the train side at the default fraction) never saw a validation document,
    on any Python version, and any smaller `val_fraction` selects a subset of the same held-out documents.
    """
    threshold = int(val_fraction * 2**64)

    def is_val(texts: list[str]) -> list[bool]:
        return [int.from_bytes(hashlib.blake2b(t.encode(), digest_size=8).digest(), "big") < threshold for t in texts]

    flags = ds.map(lambda b: {"is_val": is_val(b)}, input_columns="text", batched=True, remove_columns=ds.column_names)[
        "is_val"
    ]
    val = [i for i, f in enumerate(flags) if f]
    train = [i for i, f in enumerate(flags) if not f]
    if not val or not train:
        raise ValueError(
            f"val_fraction={val_fraction!r} leaves no train or no validation document; use a value in (0, 1)"
        )
    return DatasetDict(train=ds.select(train), validation=ds.select(val))


EMBEDDED_VAL_FRACTION = 0.05  # the built-in backbone trains on the train side of this hash split


def load_text_dataset(
    dataset: str,
    data_files: list[str] | None = None,
    text_column: str = "text",
    val_fraction: float = 0.05,
    seed: int = 0,
    cache_dir: str | None = None,
) -> DatasetDict:
    """Load a text corpus as `DatasetDict(train, validation)` with a single `text` column.

    dataset: "embedded" (the offline stdlib corpus, see `corpus.py`), "openwebtext" or "glue" (Hub; one clear
      ConnectionError when offline). Ignored when `data_files` is given.
    data_files: local .txt (one document per blank-line separated paragraph) / .parquet / .json / .jsonl /
      .csv files; `text_column` names the text field for the structured formats.
    A "validation" split shipped with the data is kept; otherwise `val_fraction` of the documents (at least
    one) is split off with `seed` -- except for the embedded corpus, split by document hash (`hash_split`;
    `seed` unused) so that its validation documents are never in the built-in backbone's training data.
    Empty documents are dropped. `cache_dir` goes to `datasets.load_dataset`.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction={val_fraction!r} is invalid; allowed: a float in (0, 1)")
    if data_files:
        if isinstance(data_files, (str, os.PathLike)):
            data_files = [data_files]
        if dataset not in ("embedded", "files", "local", None, ""):
            logger.info("data_files given: loading %s and ignoring dataset=%r", data_files, dataset)
        loaded = _load_files(list(data_files), cache_dir)
    elif dataset == "embedded":
        loaded = DatasetDict(train=Dataset.from_dict({"text": embedded_corpus()}))
    elif dataset == "openwebtext":
        loaded = _load_hub("openwebtext", cache_dir=cache_dir)
    elif dataset == "glue":
        loaded = DatasetDict(train=_glue_texts(cache_dir))
    else:
        raise ValueError(
            f"dataset={dataset!r} is unknown; allowed: 'embedded', {', '.join(map(repr, _HUB_DATASETS))}"
            " or data_files=[...] with local files"
        )

    out = {}
    for name, ds in loaded.items():
        if text_column not in ds.column_names:
            raise ValueError(f"text_column={text_column!r} is not a column of the data; available: {ds.column_names}")
        ds = ds.select_columns([text_column])
        if text_column != "text":
            ds = ds.rename_column(text_column, "text")
        out[name] = ds.filter(
            lambda b: [isinstance(t, str) and t.strip() != "" for t in b],
            input_columns="text",
            batched=True,
            desc="drop empty documents",
        )
    if "validation" in out and "train" in out:
        return DatasetDict(train=out["train"], validation=out["validation"])
    if "train" not in out:
        raise ValueError(f"the data has splits {sorted(out)}; a 'train' split is needed")
    if dataset == "embedded" and not data_files:
        if val_fraction > EMBEDDED_VAL_FRACTION:
            logger.warning(
                "val_fraction=%s > %s: some validation documents of the embedded corpus were in the built-in "
                "backbone's training data",
                val_fraction,
                EMBEDDED_VAL_FRACTION,
            )
        return hash_split(out["train"], val_fraction)
    return _split(out["train"], val_fraction, seed)


def _window_batch(
    texts: list[str],
    indices: list[int],
    tokenizer,
    eos_id: int,
    window_len: int,
    stride: int,
    bos_id: int | None,
) -> dict[str, np.ndarray]:
    """Tokenise a batch of documents, join them as `doc EOS doc EOS ...`, cut windows (numpy, no token loops).

    Each window also gets `doc_id`: the index (in the input dataset) of the document its first token belongs
    to, so statistics can be blocked by document. With `bos_id`, every window is `[BOS] + window_len - 1`
    stream tokens. The tail of each batch shorter than a window is dropped (at most window_len - 1 tokens per
    map batch).
    """
    body = window_len - (bos_id is not None)
    ids = tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
    lengths = np.fromiter((len(x) + 1 for x in ids), dtype=np.int64, count=len(ids))  # + its EOS
    flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int32, count=int(lengths.sum()) - len(ids))
    flat = np.insert(flat, np.cumsum(lengths - 1), eos_id)  # (N_tokens + N_docs,): an EOS after every document
    if len(flat) < max(body, 1):
        return {"input_ids": np.zeros((0, window_len), dtype=np.int32), "doc_id": np.zeros(0, dtype=np.int64)}
    if body == 0:  # window_len 1 with BOS: every window is the BOS alone
        windows = np.zeros((len(flat) // stride, 0), dtype=np.int32)
    else:
        windows = np.lib.stride_tricks.sliding_window_view(flat, body)[::stride]  # (N_windows, body)
    starts = np.arange(len(windows), dtype=np.int64) * stride
    doc_id = np.asarray(indices, dtype=np.int64)[np.searchsorted(np.cumsum(lengths), starts, side="right")]
    if bos_id is not None:
        windows = np.concatenate([np.full((len(windows), 1), bos_id, dtype=np.int32), windows], axis=1)
    return {"input_ids": np.ascontiguousarray(windows), "doc_id": doc_id}


def window_dataset(
    ds: Dataset,
    tokenizer,
    window_len: int,
    stride: int | None = None,
    num_proc: int | None = None,
    cache_dir: str | None = None,
    bos_id: int | None = None,
) -> Dataset:
    """Tokenise `ds["text"]` and cut the document stream into rows of exactly `window_len` token ids.

    Documents are concatenated with the tokenizer's EOS between them (no BOS / special tokens otherwise), and
    windows start every `stride` tokens (default `window_len`: no overlap; the config key `window_stride`).
    With `bos_id` every window starts with that token followed by `window_len - 1` stream tokens (how the
    built-in backbone trains, so it predicts well right after BOS). Output: an int32 column `input_ids` (rows
    come back as Python lists, so collators make int64 tensors) and `doc_id`, the input row of each window's
    first token (for statistics blocked by document). Each map batch (1000 documents) is windowed on its own,
    dropping its last partial window.

    Caching: with `cache_dir`, the result is written to `cache_dir/windows-<key>.arrow`, where the key hashes
    the input's `datasets` fingerprint, the tokenizer, `window_len`, `stride`, `bos_id` and WINDOWING_VERSION, so a
    repeated call loads it instead of re-tokenising. Without it, `datasets`' default applies (disk-backed
    inputs cache next to their source files; in-memory inputs are recomputed).
    """
    if not isinstance(window_len, int) or window_len < 1:
        raise ValueError(f"window_len={window_len!r} is invalid; allowed: an int >= 1")
    stride = window_len if stride is None else stride
    if not isinstance(stride, int) or stride < 1:
        raise ValueError(f"stride={stride!r} is invalid; allowed: an int >= 1")
    if "text" not in ds.column_names:
        raise ValueError(f"ds has columns {ds.column_names}; window_dataset needs a 'text' column")
    eos_id = tokenizer.eos_token_id
    if eos_id is None:
        raise ValueError(f"tokenizer {type(tokenizer).__name__} has no eos_token; it is needed to separate documents")

    map_kwargs = {}
    if cache_dir is not None:
        key = Hasher.hash([ds._fingerprint, Hasher.hash(tokenizer), window_len, stride, bos_id, WINDOWING_VERSION])
        os.makedirs(cache_dir, exist_ok=True)
        map_kwargs = {
            "cache_file_name": os.path.join(cache_dir, f"windows-{key}.arrow"),
            "new_fingerprint": key,
        }
    return ds.map(
        partial(_window_batch, tokenizer=tokenizer, eos_id=eos_id, window_len=window_len, stride=stride, bos_id=bos_id),
        input_columns="text",
        batched=True,
        with_indices=True,
        remove_columns=ds.column_names,
        features=Features({"input_ids": List(Value("int32"), length=window_len), "doc_id": Value("int64")}),
        num_proc=num_proc,
        desc=f"tokenise + cut {window_len}-token windows",
        **map_kwargs,
    )
