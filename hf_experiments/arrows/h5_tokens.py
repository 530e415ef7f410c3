"""Read the original arrows-of-time ``.h5`` token files into a ``datasets.Dataset`` (:func:`h5_to_dataset`).

Reads the original's 1-D token stream (cut into non-overlapping rows of ``block_size`` tokens) or a 2-D array of
rows; :func:`h5_attrs` returns a file's attributes for inspection, and ``id_to_token`` adds a decoded ``text``
column. The layout follows the original's published ``make_h5``: no real file was available to test on.

:func:`original_lines` reads the file as the arrows experiment uses it (``dataset_path: <file>.h5``): the text lines
the original tokenized. Its ``gendataset.py`` / ``prime-product_generator.py`` wrote lines ending in a newline and
tokenized them character by character (``$`` = 0 is the BOS; linear lines use the fixed dictionary
:data:`LINEAR_VOCAB`, prime lines a dictionary learned from the text and saved as ``tokenizers/<name>.pt``), in
chunks of 10,000 characters whose leading and trailing whitespace it stripped. So lines are the runs between
newline tokens, not fixed blocks: a run of k whole lines (k-1 newlines stripped) is split, and a run of another
length (a stripped space) is skipped and counted.

Design: `docs/arrows_of_time.md`, section "Reading the original's `.h5` token files".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
from datasets import Dataset
from datasets.table import InMemoryTable

_TOKENS_PER_BATCH = 1 << 24  # ~16M tokens read per h5 slice


def _pick_dataset(f: h5py.File, key: str | None, path: Path) -> h5py.Dataset:
    names: list[str] = []
    f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    if key is None:
        key = "tokens" if "tokens" in names else (names[0] if len(names) == 1 else None)
        if key is None:
            raise ValueError(f"{path} holds datasets {names}; pass key=<one of them>")
    if key not in names:
        raise ValueError(f"key={key!r} is not a dataset in {path}; available: {names}")
    dset = f[key]
    if dset.dtype.kind not in "iu" or dset.ndim not in (1, 2):
        raise ValueError(f"{path}:{key} has dtype {dset.dtype} and shape {dset.shape}; need 1-D or 2-D integers")
    return dset


def h5_attrs(path: str | Path, key: str | None = None) -> dict:
    """File attributes merged with the token dataset's attributes (dataset wins), as Python values."""
    path = Path(path)
    with h5py.File(path, "r") as f:
        dset = _pick_dataset(f, key, path)
        merged = {**f.attrs, **dset.attrs}
    return {
        k: (v.item() if isinstance(v, np.generic) else v.tolist() if isinstance(v, np.ndarray) else v)
        for k, v in merged.items()
    }


def _row_blocks(dset: h5py.Dataset, block_size: int | None, max_rows: int | None):
    """Yield (rows, T) arrays read in batches, so a file larger than memory can stream to disk."""
    if dset.ndim == 2:
        n_rows, width = dset.shape
        if block_size is not None and block_size != width:
            raise ValueError(f"block_size={block_size} does not match the rows of width {width} in the file")
    else:
        if block_size is None or block_size < 1:
            raise ValueError(f"block_size={block_size} is not allowed for a 1-D token stream; use an int >= 1")
        n_rows, width = dset.shape[0] // block_size, block_size
    n_rows = n_rows if max_rows is None else min(n_rows, max_rows)
    rows_per_batch = max(1, _TOKENS_PER_BATCH // max(width, 1))
    for start in range(0, n_rows, rows_per_batch):
        stop = min(start + rows_per_batch, n_rows)
        if dset.ndim == 2:
            yield dset[start:stop]
        else:
            yield dset[start * width : stop * width].reshape(stop - start, width)  # (rows*T,) -> (rows, T)
    if n_rows == 0:
        yield np.empty((0, width), dtype=dset.dtype)


def _decoder(id_to_token: Mapping[int, str] | Sequence[str]) -> np.ndarray:
    """Lookup table id -> ASCII code; only single-character vocabularies decode without a per-row loop."""
    pairs = list(id_to_token.items()) if isinstance(id_to_token, Mapping) else list(enumerate(id_to_token))
    if not pairs:
        raise ValueError("id_to_token is empty; pass the vocabulary the file was written with")
    table = np.zeros(max(int(i) for i, _ in pairs) + 1, dtype=np.uint8)  # 0 marks ids without a token
    for i, tok in pairs:
        if len(tok) != 1 or not tok.isascii() or tok == "\0":
            raise ValueError(f"id_to_token[{i}]={tok!r} is not allowed; need single non-NUL ASCII characters")
        table[int(i)] = ord(tok)
    return table


def _to_batch(rows: np.ndarray, column: str, decode: np.ndarray | None) -> pa.RecordBatch:
    flat = pa.array(np.ascontiguousarray(rows).reshape(-1))  # (rows*T,)
    arrays = {column: pa.FixedSizeListArray.from_arrays(flat, rows.shape[1])}
    if decode is not None:
        if rows.size and (rows.min() < 0 or rows.max() >= len(decode)):
            raise ValueError("token ids fall outside id_to_token; pass the vocabulary the file was written with")
        chars = np.ascontiguousarray(decode[rows])  # (rows, T) ASCII codes
        if not chars.all():
            raise ValueError("some token ids have no entry in id_to_token; pass the full vocabulary")
        width = rows.shape[1]
        offsets = np.arange(len(rows) + 1, dtype=np.int32) * width  # batches stay far below 2^31 chars
        arrays["text"] = pa.Array.from_buffers(
            pa.string(), len(rows), [None, pa.py_buffer(offsets), pa.py_buffer(chars)]
        )
    return pa.RecordBatch.from_pydict(arrays)


def h5_to_dataset(
    path: str | Path,
    block_size: int | None = None,
    *,
    key: str | None = None,
    column: str = "input_ids",
    id_to_token: Mapping[int, str] | Sequence[str] | None = None,
    max_rows: int | None = None,
    cache_file: str | Path | None = None,
) -> Dataset:
    """Token ids from an ``.h5`` file as a Dataset with one fixed-length ``column`` per row.

    Args:
        block_size: tokens per row for a 1-D stream (the original's ``attn_length``); for 2-D files it
            must be None or equal the row width.
        id_to_token: optional character vocabulary; adds a ``text`` column with the decoded row.
        max_rows: read only the first rows (quick looks at 10^9-token files).
        cache_file: stream batches into this Arrow file and memory-map it instead of holding the
            whole table in RAM (for files larger than memory).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"path={str(path)!r} is not a file")
    decode = _decoder(id_to_token) if id_to_token is not None else None
    with h5py.File(path, "r") as f:
        dset = _pick_dataset(f, key, path)
        batches = (_to_batch(rows, column, decode) for rows in _row_blocks(dset, block_size, max_rows))
        if cache_file is None:
            return Dataset(InMemoryTable(pa.Table.from_batches(list(batches))))
        first = next(batches)
        with pa.OSFile(str(cache_file), "wb") as sink, pa.ipc.new_stream(sink, first.schema) as writer:
            writer.write_batch(first)
            for batch in batches:
                writer.write_batch(batch)
    return Dataset.from_file(str(cache_file))


# ---------------------------------------------------------------------------------------------
# The original's lines
# ---------------------------------------------------------------------------------------------
# The original gendataset.py's dictionary for linear-language lines; its tokenizer adds the newline, the one
# character the lines have beyond it, as the next id.
LINEAR_VOCAB: dict[str, int] = {"$": 0, "0": 1, "1": 2, "_": 3, "\n": 4}
_NEWLINE = "\n"


def load_vocab(path: str | Path) -> dict[str, int]:
    """The original tokenizer's dictionary (character -> id): ``tokenizers/<name>.pt`` as its tok_text_to_h5 saved
    it (a torch-saved dict), or JSON (``{char: id}`` or ``{"t2i": {char: id}}``). Raises ValueError otherwise."""
    path = Path(path)
    try:
        if path.suffix == ".json":
            import json

            obj = json.loads(path.read_text(encoding="utf-8"))
        else:
            import torch

            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises pickle / runtime errors of many kinds for a file that is not a dict
        raise ValueError(f"{path} is not a saved tokenizer dictionary ({type(e).__name__})") from None
    if isinstance(obj, dict) and isinstance(obj.get("t2i"), dict):
        obj = obj["t2i"]
    if not isinstance(obj, dict) or not all(isinstance(k, str) and len(k) == 1 for k in obj):
        raise ValueError(f"{path} is not a dictionary of single characters -> ids")
    try:
        vocab = {k: int(v) for k, v in obj.items()}
    except (TypeError, ValueError):
        raise ValueError(f"{path} maps characters to values that are not integer ids") from None
    if _NEWLINE not in vocab:
        raise ValueError(f"{path} has no newline; lines need it (the original adds it on first sight)")
    return vocab


def _char_table(vocab: dict[str, int]) -> np.ndarray:
    """id -> ASCII code of its character; 0 for ids without one (and for the BOS, never part of a line)."""
    table = np.zeros(max(vocab.values()) + 1, dtype=np.uint8)
    for char, i in vocab.items():
        if char != "$" and char.isascii() and i >= 0:
            table[i] = ord(char)
    return table


def _runs(tokens: np.ndarray, newline: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(starts, lengths) of the runs that end in a newline token, and where the unfinished last run starts."""
    ends = np.flatnonzero(tokens == newline)
    starts = np.concatenate([[0], ends[:-1] + 1]) if len(ends) else np.empty(0, dtype=np.int64)
    tail = int(ends[-1]) + 1 if len(ends) else 0
    return starts, ends - starts, tail


def _cut(tokens: np.ndarray, starts: np.ndarray, lengths: np.ndarray, width: int, table: np.ndarray):
    """Lines of `width` characters from the runs (a run of k whole lines gives k), decoded; and the count of runs
    skipped (another length, or an id outside the dictionary)."""
    whole = (lengths > 0) & (lengths % width == 0)
    k = lengths[whole] // width
    first = np.repeat(starts[whole], k) + width * (np.arange(k.sum()) - np.repeat(np.cumsum(k) - k, k))
    ids = tokens[first[:, None] + np.arange(width)]  # (lines, width)
    ok = (ids >= 0) & (ids < len(table))
    chars = table[np.where(ok, ids, 0)]
    good = chars.all(axis=1)
    skipped = int((~whole & (lengths > 0)).sum() + (~good).sum())
    return np.ascontiguousarray(chars[good]), skipped


def stream_line_width(
    path: str | Path, vocab: dict[str, int], *, key: str | None = None, n_tokens: int = 1 << 16
) -> tuple[int, int, int]:
    """(the most common line length among the first `n_tokens` tokens, the file's token count, the largest id
    among those tokens). Raises ValueError (OSError for a file that is not HDF5) when the file is not one 1-D
    stream of lines."""
    path = Path(path)
    with h5py.File(path, "r") as f:
        dset = _pick_dataset(f, key, path)
        if dset.ndim != 1:
            raise ValueError(f"it holds rows of shape {dset.shape}; the original wrote one 1-D token stream")
        tokens = np.asarray(dset[:n_tokens], dtype=np.int64)
        total = int(dset.shape[0])
    _, lengths, _ = _runs(tokens, vocab[_NEWLINE])
    lengths = lengths[lengths > 0]
    if not len(lengths):
        raise ValueError(f"no newline token (id {vocab[_NEWLINE]}) in its first {len(tokens)} tokens")
    return int(np.bincount(lengths).argmax()), total, int(tokens.max())


def original_lines(
    path: str | Path,
    vocab: dict[str, int],
    width: int,
    *,
    key: str | None = None,
    max_tokens: int | None = None,
) -> tuple[np.ndarray, int]:
    """The original's text lines of `width` characters as an ``S<width>`` array (N,), and the number of runs
    skipped; read in slices of ~16M tokens, so only the lines (1 byte a character) are held in memory."""
    path = Path(path)
    table = _char_table(vocab)
    newline = vocab[_NEWLINE]
    parts: list[np.ndarray] = []
    skipped = 0
    with h5py.File(path, "r") as f:
        dset = _pick_dataset(f, key, path)
        total = dset.shape[0] if max_tokens is None else min(dset.shape[0], max_tokens)
        carry = np.empty(0, dtype=np.int64)
        for start in range(0, total, _TOKENS_PER_BATCH):
            tokens = np.concatenate([carry, np.asarray(dset[start : min(start + _TOKENS_PER_BATCH, total)])])
            starts, lengths, tail = _runs(tokens.astype(np.int64, copy=False), newline)
            lines, bad = _cut(tokens, starts, lengths, width, table)
            parts.append(lines)
            skipped += bad
            carry = tokens[tail:].astype(np.int64)
        if len(carry):  # the last line: the original's strip() removed its newline
            lines, bad = _cut(carry, np.array([0]), np.array([len(carry)]), width, table)
            parts.append(lines)
            skipped += bad
    rows = np.concatenate(parts) if parts else np.empty((0, width), dtype=np.uint8)
    return rows.view(f"S{width}").reshape(len(rows)), skipped
