"""The digit-level tokenizer of the arithmetic rows: one token per character (the seed's ``digit_embs``).

It is :class:`~hf_experiments.core.tokenization_char.CharTokenizer` over ``0-9 + * ( ) =``, an instance and not
a subclass: what a run saves with the model is the character tokenizer's self-contained file (plus its vocabulary),
which loads with ``AutoTokenizer.from_pretrained(folder, trust_remote_code=True)`` where this package is not
installed; a subclass here would need this file, and its import of the package, in the saved folder too.
:func:`encode_rows` is the vectorised hot path that turns variable-length rows into
``[BOS] problem = step_1 = ... = answer [EOS]`` id arrays without a Python loop per character (either backend).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hf_experiments.core.tokenization_char import CharTokenizer, CharTokenizerFast

ARITH_CHARACTERS = "0123456789+*()="


def arith_tokenizer() -> CharTokenizer:
    """``<pad>``=0, ``<bos>``=1, ``<eos>``=2, ``<unk>``=3, then ``0-9 + * ( ) =``."""
    return CharTokenizer(characters=ARITH_CHARACTERS)


def encode_rows(
    tokenizer: CharTokenizer | CharTokenizerFast, texts: Sequence[str], add_bos: bool = True, add_eos: bool = True
) -> list[np.ndarray]:
    """Rows of text -> one int64 id array each (``[BOS] text [EOS]``), via one byte lookup for all rows."""
    if len(texts) == 0:
        return []
    lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))  # (N,)
    try:
        raw = np.frombuffer("".join(texts).encode("ascii"), dtype=np.uint8)
    except UnicodeEncodeError:
        raise ValueError("encode_rows: texts must be ASCII arithmetic rows (digits, + * ( ) =)") from None
    n_bos, n_eos = int(add_bos), int(add_eos)
    out_len = lengths + n_bos + n_eos  # (N,)
    starts = np.cumsum(out_len) - out_len  # (N,) first slot of each row in the flat output
    flat = np.empty(int(out_len.sum()), dtype=np.int64)
    within = np.arange(len(raw)) - np.repeat(np.cumsum(lengths) - lengths, lengths)  # char index in its row
    flat[np.repeat(starts + n_bos, lengths) + within] = tokenizer._byte_lut[raw]
    if add_bos:
        flat[starts] = tokenizer.bos_token_id
    if add_eos:
        flat[starts + out_len - 1] = tokenizer.eos_token_id
    return np.split(flat, np.cumsum(out_len)[:-1])
