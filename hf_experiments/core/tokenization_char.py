"""One-token-per-character tokenizer for synthetic line datasets (prime products, linear languages, arithmetic).

Ids: the four specials first (``<pad>``=0, ``<bos>``=1, ``<eos>``=2, ``<unk>``=3), then the alphabet in the
given order, so special ids do not depend on the alphabet and match ``GPTConfig``'s defaults. Encoding puts
BOS first (the model predicts ``t0`` from BOS) and EOS last only with ``add_eos``. ``encode_lines`` is the hot
path for datasets of millions of fixed-width lines: one 256-entry lookup table applied to the raw bytes, no
Python loop per line.

Two backends with the same ids: :class:`CharTokenizer` (transformers' Python backend, the "slow" one) and
:class:`CharTokenizerFast` (a ``tokenizers`` ``WordLevel`` model behind a one-character split; what
``AutoTokenizer`` loads from the saved code, as transformers 5 prefers that backend). Both save the same folder:
``vocab.json`` (token -> id, the one source of both), ``tokenizer.json`` (the ``tokenizers`` serialization, which
other ``tokenizers`` users read), ``tokenizer_config.json`` with ``auto_map`` and this file. This module imports
only numpy, tokenizers and transformers (all three installed with transformers), so the copy of it saved with a
model loads with ``AutoTokenizer.from_pretrained(folder, trust_remote_code=True)`` where ``hf_experiments`` is not
installed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizer, PreTrainedTokenizerFast

VOCAB_FILES_NAMES = {"vocab_file": "vocab.json"}
FAST_VOCAB_FILES_NAMES = {"vocab_file": "vocab.json", "tokenizer_file": "tokenizer.json"}
# Settings of the slow tokenizer that are not its own but transformers' bookkeeping: not handed to the fast twin.
_NOT_CARRIED = ("backend", "name_or_path", "vocab_file", "tokenizer_file", "added_tokens_decoder", "is_local")


class _CharVocab:
    """What both backends share: the vocabulary rules, the byte lookup table and ``encode_lines``."""

    encoder: dict[str, int]
    tokens_by_id: dict[int, str]
    characters: str
    _byte_lut: np.ndarray

    def _set_vocab(
        self, characters: str | None, vocab_file: str | None, vocab: dict[str, int] | None, specials: list[str]
    ) -> None:
        name = type(self).__name__
        if vocab is None and vocab_file is not None:
            with open(vocab_file, encoding="utf-8") as handle:
                vocab = json.load(handle)
        if vocab is not None:
            vocab = {str(token): int(index) for token, index in vocab.items()}
            missing = [token for token in specials if token not in vocab]
            if missing:
                where = f"vocab_file={vocab_file!r}" if vocab_file is not None else "vocab"
                raise ValueError(f"{name}: {where} lacks special tokens {missing}.")
        else:
            vocab = _build_vocab(name, characters, specials)
        self.encoder = vocab
        self.tokens_by_id = {index: token for token, index in vocab.items()}
        self.characters = "".join(
            token for token, _ in sorted(vocab.items(), key=lambda kv: kv[1]) if token not in specials
        )
        self._byte_lut = _build_byte_lut(vocab, specials)

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
                f"{type(self).__name__}.encode_lines: dtype={dtype} is invalid; "
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

    def _write_vocab(self, save_directory: str, filename_prefix: str | None) -> tuple[str, ...]:
        if not os.path.isdir(save_directory):
            raise ValueError(f"{type(self).__name__}: save_directory={save_directory!r} is not an existing directory.")
        name = (f"{filename_prefix}-" if filename_prefix else "") + VOCAB_FILES_NAMES["vocab_file"]
        path = os.path.join(save_directory, name)
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(self.encoder, handle, ensure_ascii=False, indent=1)
        return (path,)


class CharTokenizer(_CharVocab, PreTrainedTokenizer):
    """Character tokenizer over a fixed alphabet, e.g. ``CharTokenizer(characters="0123456789 *=_")``.

    ``save_pretrained`` writes the folder of its fast twin (:class:`CharTokenizerFast`, the same ids), so a saved
    folder is the same whichever backend saved it; ``CharTokenizer.from_pretrained(path)`` reads it back as this
    class, ``AutoTokenizer.from_pretrained(path, trust_remote_code=True)`` as the fast one (the code saved in the
    folder), and ``AutoTokenizer.from_pretrained(path)`` with the package imported as the class the model's config
    is registered with.
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
        vocab: dict[str, int] | None = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(add_eos, bool):
            raise ValueError(f"CharTokenizer: add_eos={add_eos!r} is invalid; expected True or False.")
        self._set_vocab(characters, vocab_file, vocab, [str(pad_token), str(bos_token), str(eos_token), str(unk_token)])
        self.add_eos = add_eos
        kwargs.pop("tokenizer_file", None)  # the fast twin's file, found beside vocab.json when loading a folder
        kwargs.pop("backend", None)  # the saved folder's (the fast twin's "tokenizers"), not this one's
        kwargs.setdefault("clean_up_tokenization_spaces", False)  # spaces are data here, never "clean" them
        super().__init__(
            pad_token=pad_token,
            bos_token=bos_token,
            eos_token=eos_token,
            unk_token=unk_token,
            add_eos=add_eos,
            **kwargs,
        )

    # ----- PreTrainedTokenizer hooks -----
    @property
    def vocab_size(self) -> int:
        return len(self.encoder)

    def get_vocab(self) -> dict[str, int]:
        return {**self.encoder, **self.added_tokens_encoder}

    def _tokenize(self, text: str, **kwargs: Any) -> list[str]:
        """One token per character; one outside the vocabulary is ``<unk>`` (as the fast backend's is)."""
        unk = str(self.unk_token)
        return [ch if ch in self.encoder else unk for ch in text]

    def _convert_token_to_id(self, token: str) -> int:
        return self.encoder.get(token, self.encoder[str(self.unk_token)])

    def _convert_id_to_token(self, index: int) -> str:
        return self.tokens_by_id.get(index, str(self.unk_token))

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
        return self._write_vocab(save_directory, filename_prefix)

    # ----- the fast twin -----
    def to_fast(self) -> CharTokenizerFast:
        """The :class:`CharTokenizerFast` with this vocabulary, settings and added tokens (the same ids)."""
        # the current values of the settings it was made with (what its own `save_pretrained` would write)
        settings = {k: getattr(self, k, v) for k, v in self.init_kwargs.items() if k not in _NOT_CARRIED}
        fast = CharTokenizerFast(vocab=dict(self.encoder), **{**settings, "model_max_length": self.model_max_length})
        fast.padding_side, fast.truncation_side = self.padding_side, self.truncation_side
        added = [token for index, token in sorted(self.added_tokens_decoder.items()) if index >= len(self.encoder)]
        if added:
            fast.add_tokens(added)
        return fast

    def save_pretrained(self, save_directory: str | os.PathLike, *args: Any, **kwargs: Any) -> tuple[str, ...]:
        """The fast twin's folder (see the class docstring): ``auto_map`` names both classes, so
        ``AutoTokenizer`` (which prefers the ``tokenizers`` backend) and this class both load it."""
        return self.to_fast().save_pretrained(save_directory, *args, **kwargs)


class CharTokenizerFast(_CharVocab, PreTrainedTokenizerFast):
    """:class:`CharTokenizer` on the ``tokenizers`` backend: the same vocabulary, ids, special tokens and decoding.

    The backend is a ``WordLevel`` model over the vocabulary behind a pre-tokenizer that splits the text into
    single characters (code points, as ``list(text)`` does), the specials as special added tokens (found in the
    text like the slow tokenizer's), a template post-processor for ``[BOS] a ([EOS])`` and a ``Fuse`` decoder
    (tokens joined without spaces). It is always built from the vocabulary (``vocab.json`` when loading), the
    source both backends share; the ``tokenizer.json`` it saves is for readers without this class.
    """

    vocab_files_names = FAST_VOCAB_FILES_NAMES
    model_input_names = ["input_ids", "attention_mask"]
    slow_tokenizer_class = CharTokenizer

    def __init__(
        self,
        characters: str | None = None,
        vocab_file: str | None = None,
        add_eos: bool = False,
        pad_token: str = "<pad>",
        bos_token: str = "<bos>",
        eos_token: str = "<eos>",
        unk_token: str = "<unk>",
        vocab: dict[str, int] | None = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(add_eos, bool):
            raise ValueError(f"CharTokenizerFast: add_eos={add_eos!r} is invalid; expected True or False.")
        specials = [str(pad_token), str(bos_token), str(eos_token), str(unk_token)]
        self._set_vocab(characters, vocab_file, vocab, specials)
        self._add_eos = add_eos
        for key in ("tokenizer_file", "tokenizer_object", "merges", "post_processor"):
            kwargs.pop(key, None)  # built here from the vocabulary, never from another serialization
        backend = Tokenizer(models.WordLevel(self.encoder, unk_token=specials[3]))
        backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")  # one code point each
        backend.decoder = decoders.Fuse()
        backend.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in specials])
        kwargs.setdefault("clean_up_tokenization_spaces", False)  # spaces are data here, never "clean" them
        super().__init__(
            tokenizer_object=backend,
            pad_token=pad_token,
            bos_token=bos_token,
            eos_token=eos_token,
            unk_token=unk_token,
            add_eos=add_eos,
            **kwargs,
        )
        self.update_post_processor()

    @classmethod
    def convert_to_native_format(cls, trust_remote_code: bool = False, **kwargs: Any) -> dict[str, Any]:
        """As given: ``__init__`` builds the backend from ``vocab.json`` itself (the generic conversion would
        rebuild a BPE model from ``tokenizer.json``)."""
        return kwargs

    @property
    def add_eos(self) -> bool:
        return self._add_eos

    @add_eos.setter
    def add_eos(self, value: bool) -> None:
        self._add_eos = value
        self.update_post_processor()

    def update_post_processor(self) -> None:
        """``[BOS] a ([EOS])`` and ``[BOS] a ([EOS]) b ([EOS])``, the slow tokenizer's layout."""
        if getattr(self, "_tokenizer", None) is None or self.bos_token is None:
            return
        bos, eos = str(self.bos_token), str(self.eos_token)
        end_a, end_b = ([f"{eos}:0"], [f"{eos}:1"]) if self._add_eos else ([], [])
        specials = [(bos, self.encoder[bos])] + ([(eos, self.encoder[eos])] if self._add_eos else [])
        single = [f"{bos}:0", "$A:0", *end_a]
        self._tokenizer.post_processor = processors.TemplateProcessing(
            single=single, pair=[*single, "$B:1", *end_b], special_tokens=specials
        )

    def save_vocabulary(self, save_directory: str, filename_prefix: str | None = None) -> tuple[str, ...]:
        return self._write_vocab(save_directory, filename_prefix)

    def _save_pretrained(
        self,
        save_directory: str | os.PathLike,
        file_names: tuple[str, ...],
        legacy_format: bool | None = None,
        filename_prefix: str | None = None,
    ) -> tuple[str, ...]:
        """``tokenizer.json`` (the base class) and ``vocab.json``, which both backends load from."""
        files = super()._save_pretrained(save_directory, file_names, legacy_format, filename_prefix)
        return files + self.save_vocabulary(str(save_directory), filename_prefix)


def _build_vocab(name: str, characters: str | None, specials: list[str]) -> dict[str, int]:
    if not isinstance(characters, str) or not characters:
        raise ValueError(f"{name}: characters={characters!r} is invalid; expected a non-empty string (the alphabet).")
    repeated = sorted({ch for ch in characters if characters.count(ch) > 1})
    if repeated:
        raise ValueError(f"{name}: characters={characters!r} repeats {repeated}; expected each once.")
    clashes = [ch for ch in characters if ch in specials]
    if clashes:
        raise ValueError(f"{name}: characters={characters!r} contains special tokens {clashes}.")
    return {token: index for index, token in enumerate([*specials, *characters])}


def _build_byte_lut(vocab: dict[str, int], specials: list[str]) -> np.ndarray:
    """byte value -> token id; bytes outside the alphabet map to ``<unk>`` like ``encode`` does."""
    lut = np.full(256, vocab[specials[3]], dtype=np.int64)
    for token, index in vocab.items():
        if len(token) == 1 and ord(token) < 256 and token not in specials:
            lut[ord(token)] = index
    return lut


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


# `save_pretrained` then writes `auto_map` and copies this file beside the vocabulary (transformers' custom code).
CharTokenizer.register_for_auto_class("AutoTokenizer")
CharTokenizerFast.register_for_auto_class("AutoTokenizer")

__all__ = ["CharTokenizer", "CharTokenizerFast"]
