"""One-token-per-character tokenizer for synthetic line datasets (prime products, linear languages).

Ids: the four specials first (``<pad>``=0, ``<bos>``=1, ``<eos>``=2, ``<unk>``=3), then the alphabet in the
given order, so special ids do not depend on the alphabet and match ``GPTConfig``'s defaults. Encoding puts
BOS first (the model predicts ``t0`` from BOS) and EOS last only with ``add_eos``. ``encode_lines`` is the hot
path for datasets of millions of fixed-width lines: one 256-entry lookup table applied to the raw bytes, no
Python loop per line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from transformers import PreTrainedTokenizer

VOCAB_FILES_NAMES = {"vocab_file": "vocab.json"}


class CharTokenizer(PreTrainedTokenizer):
    """Character tokenizer over a fixed alphabet, e.g. ``CharTokenizer(characters="0123456789 *=_")``.

    Saved as ``vocab.json`` (token -> id) plus ``tokenizer_config.json``; reloads with
    ``CharTokenizer.from_pretrained(path)``, or ``AutoTokenizer.from_pretrained(path)`` when a ``GPTConfig``
    sits beside it (importing ``hf_experiments.arrows`` registers the pair).
    """

    vocab_files_names = VOCAB_FILES_NAMES
    # No token_type_ids: the GPT would otherwise embed them as extra tokens.
    model_input_names = ["input_ids", "attention_mask"]

    def __init__(
        self,
        characters: str | None = None,
        vocab_file: str | None = None,
        add_eos: bool = False,
        pad_token: str = "<pad>",
        bos_token: str = "<bos>",
        eos_token: str = "<eos>",
        unk_token: str = "<unk>",
        **kwargs: Any,
    ) -> None:
        specials = [str(pad_token), str(bos_token), str(eos_token), str(unk_token)]
        if vocab_file is not None:
            with open(vocab_file, encoding="utf-8") as handle:
                vocab = {str(token): int(index) for token, index in json.load(handle).items()}
            missing = [token for token in specials if token not in vocab]
            if missing:
                raise ValueError(f"CharTokenizer: vocab_file={vocab_file!r} lacks special tokens {missing}.")
        else:
            vocab = self._build_vocab(characters, specials)
        if not isinstance(add_eos, bool):
            raise ValueError(f"CharTokenizer: add_eos={add_eos!r} is invalid; expected True or False.")
        self.encoder: dict[str, int] = vocab
        self.decoder: dict[int, str] = {index: token for token, index in vocab.items()}
        self.add_eos = add_eos
        self.characters = "".join(
            token for token, _ in sorted(vocab.items(), key=lambda kv: kv[1]) if token not in specials
        )
        self._byte_lut = self._build_byte_lut(vocab, specials)
        kwargs.setdefault("clean_up_tokenization_spaces", False)  # spaces are data here, never "clean" them
        super().__init__(
            pad_token=pad_token,
            bos_token=bos_token,
            eos_token=eos_token,
            unk_token=unk_token,
            add_eos=add_eos,
            **kwargs,
        )

    @staticmethod
    def _build_vocab(characters: str | None, specials: list[str]) -> dict[str, int]:
        if not isinstance(characters, str) or not characters:
            raise ValueError(
                f"CharTokenizer: characters={characters!r} is invalid; expected a non-empty string (the alphabet)."
            )
        repeated = sorted({ch for ch in characters if characters.count(ch) > 1})
        if repeated:
            raise ValueError(f"CharTokenizer: characters={characters!r} repeats {repeated}; expected each once.")
        clashes = [ch for ch in characters if ch in specials]
        if clashes:
            raise ValueError(f"CharTokenizer: characters={characters!r} contains special tokens {clashes}.")
        return {token: index for index, token in enumerate([*specials, *characters])}

    @staticmethod
    def _build_byte_lut(vocab: dict[str, int], specials: list[str]) -> np.ndarray:
        """byte value -> token id; bytes outside the alphabet map to ``<unk>`` like ``encode`` does."""
        lut = np.full(256, vocab[specials[3]], dtype=np.int64)
        for token, index in vocab.items():
            if len(token) == 1 and ord(token) < 256 and token not in specials:
                lut[ord(token)] = index
        return lut

    # ----- PreTrainedTokenizer hooks -----
    @property
    def vocab_size(self) -> int:
        return len(self.encoder)

    def get_vocab(self) -> dict[str, int]:
        return {**self.encoder, **self.added_tokens_encoder}

    def _tokenize(self, text: str, **kwargs: Any) -> list[str]:
        return list(text)

    def _convert_token_to_id(self, token: str) -> int:
        return self.encoder.get(token, self.encoder[str(self.unk_token)])

    def _convert_id_to_token(self, index: int) -> str:
        return self.decoder.get(index, str(self.unk_token))

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        return "".join(tokens)

    def build_inputs_with_special_tokens(
        self, token_ids_0: list[int], token_ids_1: list[int] | None = None
    ) -> list[int]:
        """``[BOS] a ([EOS])`` and, for pairs, ``[BOS] a ([EOS]) b ([EOS])``."""
        eos = [self.eos_token_id] if self.add_eos else []
        ids = [self.bos_token_id, *token_ids_0, *eos]
        return ids if token_ids_1 is None else [*ids, *token_ids_1, *eos]

    def get_special_tokens_mask(
        self,
        token_ids_0: list[int],
        token_ids_1: list[int] | None = None,
        already_has_special_tokens: bool = False,
    ) -> list[int]:
        if already_has_special_tokens:
            return super().get_special_tokens_mask(token_ids_0, token_ids_1, already_has_special_tokens=True)
        eos = [1] if self.add_eos else []
        mask = [1, *([0] * len(token_ids_0)), *eos]
        return mask if token_ids_1 is None else [*mask, *([0] * len(token_ids_1)), *eos]

    def save_vocabulary(self, save_directory: str, filename_prefix: str | None = None) -> tuple[str, ...]:
        if not os.path.isdir(save_directory):
            raise ValueError(f"CharTokenizer: save_directory={save_directory!r} is not an existing directory.")
        name = (f"{filename_prefix}-" if filename_prefix else "") + VOCAB_FILES_NAMES["vocab_file"]
        path = os.path.join(save_directory, name)
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(self.encoder, handle, ensure_ascii=False, indent=1)
        return (path,)

    # ----- vectorised batch encoding -----
    def encode_lines(
        self,
        lines: np.ndarray | Sequence[str] | Sequence[bytes],
        *,
        add_eos: bool | None = None,
        reverse: bool = False,
        dtype: type | np.dtype = np.int64,
    ) -> np.ndarray:
        """Encode N equal-length lines to an ``(N, L + 1)`` id array (``L + 2`` with EOS), BOS in column 0.

        ``lines``: a list of str/bytes, a 1-D numpy ``U``/``S`` array (e.g. fixed-width strings read from
        HDF5) or an ``(N, L)`` uint8 array of raw bytes. ``reverse=True`` reverses each line character-wise
        before adding BOS/EOS (the "backward" direction). Equivalent to ``encode(line)`` per line, for
        single-byte characters.
        For very large N, call it on chunks (the output holds N * (L + 1) ids of ``dtype``).
        """
        add_eos = self.add_eos if add_eos is None else add_eos
        dtype = np.dtype(dtype)
        if dtype.kind not in "iu" or np.iinfo(dtype).max < len(self) - 1:
            raise ValueError(
                f"CharTokenizer.encode_lines: dtype={dtype} is invalid; "
                f"expected an integer type holding ids up to {len(self) - 1}."
            )
        codes = _line_codes(lines)  # (N, L) uint8 / uint32 character codes
        if reverse:
            codes = codes[:, ::-1]
        n_lines, width = codes.shape
        lut = self._byte_lut.astype(dtype)
        out = np.empty((n_lines, width + 1 + int(add_eos)), dtype=dtype)  # (N, L + 1 [+ 1])
        out[:, 0] = self.bos_token_id
        if codes.dtype == np.uint8:
            out[:, 1 : width + 1] = lut[codes]
        else:  # UCS-4 code points: beyond one byte they cannot be in the table, so they are <unk>
            wide = codes >= 256
            out[:, 1 : width + 1] = np.where(wide, self.unk_token_id, lut[np.where(wide, 0, codes)])
        if add_eos:
            out[:, -1] = self.eos_token_id
        return out


def _line_codes(lines: np.ndarray | Sequence[str] | Sequence[bytes]) -> np.ndarray:
    """Fixed-width character codes ``(N, L)`` (uint8 for bytes, uint32 for str), no per-line loop."""
    arr = np.asarray(lines)
    if arr.ndim == 2 and arr.dtype == np.uint8:
        codes = arr
    elif arr.ndim == 1 and arr.dtype.kind in "SU":
        unit = np.uint8 if arr.dtype.kind == "S" else np.uint32
        width = arr.dtype.itemsize // np.dtype(unit).itemsize
        codes = np.ascontiguousarray(arr).view(unit).reshape(arr.shape[0], width)  # (N, L)
    else:
        raise ValueError(
            f"CharTokenizer.encode_lines: lines of dtype={arr.dtype} and shape={arr.shape} are invalid; "
            "expected a list/1-D array of str or bytes, or an (N, L) uint8 array."
        )
    # numpy pads shorter strings with NUL up to the widest one; a NUL therefore means unequal lengths.
    nul_rows = np.flatnonzero((codes == 0).any(axis=1))
    if nul_rows.size:
        row = int(nul_rows[0])
        raise ValueError(
            f"CharTokenizer.encode_lines: line {row} ({arr[row]!r}) is shorter than the others "
            f"or contains NUL; expected all lines of length {codes.shape[1]}."
        )
    return codes


__all__ = ["CharTokenizer"]
