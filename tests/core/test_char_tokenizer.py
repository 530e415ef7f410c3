"""CharTokenizer: exact round trips, BOS/EOS placement, save/load, and the vectorised encode_lines."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import pytest
from transformers import AutoTokenizer

from hf_experiments.arrows.configuration_gpt import GPTConfig
from hf_experiments.core.tokenization_char import CharTokenizer, CharTokenizerFast

ALPHABET = "0123456789 *=_"
LINES = ["00013 * 00101   =   3131000000", "00007 * 00011   =   7700000000", "0110100110_______0101100111010"]


@pytest.fixture()
def tok() -> CharTokenizer:
    return CharTokenizer(characters=ALPHABET)


def test_specials_first_then_alphabet(tok):
    assert [tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id] == [0, 1, 2, 3]
    assert len(tok) == tok.vocab_size == 4 + len(ALPHABET)
    assert tok.convert_tokens_to_ids(list(ALPHABET)) == list(range(4, 4 + len(ALPHABET)))


@pytest.mark.parametrize("line", [*LINES, "", " ", "9*9"])
def test_round_trip_with_bos_first(tok, line):
    ids = tok.encode(line)
    assert ids[0] == tok.bos_token_id
    assert len(ids) == len(line) + 1
    assert tok.eos_token_id not in ids
    assert tok.decode(ids, skip_special_tokens=True) == line
    assert tok.decode(ids) == "<bos>" + line


def test_add_eos_puts_eos_last():
    tok = CharTokenizer(characters=ALPHABET, add_eos=True)
    ids = tok.encode(LINES[0])
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
    assert len(ids) == len(LINES[0]) + 2
    assert tok.decode(ids, skip_special_tokens=True) == LINES[0]


def test_unknown_character_maps_to_unk(tok):
    assert tok.encode("1x2") == [tok.bos_token_id, 5, tok.unk_token_id, 6]


def test_batch_padding_uses_pad_id_and_no_token_type_ids(tok):
    batch = tok(["12", "1234"], padding=True)
    assert batch["input_ids"][0] == [1, 5, 6, 0, 0]
    assert batch["attention_mask"][0] == [1, 1, 1, 0, 0]
    assert "token_type_ids" not in batch


def _per_line(tok, lines, **kwargs):
    return np.array([tok.encode(line, **kwargs) for line in lines])


@pytest.mark.parametrize("kind", ["list_str", "array_U", "array_S", "list_bytes", "uint8"])
def test_encode_lines_equals_per_line_encode(tok, kind):
    lines = [*LINES[:2], LINES[2][:-1] + "?"]  # an out-of-alphabet byte goes to <unk> on both paths
    inputs = {
        "list_str": lines,
        "array_U": np.array(lines),
        "array_S": np.array([s.encode() for s in lines], dtype="S30"),
        "list_bytes": [s.encode() for s in lines],
        "uint8": np.frombuffer("".join(lines).encode(), dtype=np.uint8).reshape(len(lines), -1),
    }[kind]
    expected = _per_line(tok, lines)
    got = tok.encode_lines(inputs)
    assert got.shape == (len(lines), len(lines[0]) + 1)
    np.testing.assert_array_equal(got, expected)


def test_encode_lines_eos_reverse_and_dtype():
    tok = CharTokenizer(characters=ALPHABET, add_eos=True)
    np.testing.assert_array_equal(tok.encode_lines(LINES), _per_line(tok, LINES))
    backward = tok.encode_lines(LINES, reverse=True, add_eos=False, dtype=np.uint8)
    assert backward.dtype == np.uint8
    np.testing.assert_array_equal(backward, _per_line(CharTokenizer(characters=ALPHABET), [s[::-1] for s in LINES]))


def test_encode_lines_wide_unicode_is_unk(tok):
    got = tok.encode_lines(["1\u20ac2", "345"])
    np.testing.assert_array_equal(got[0], tok.encode("1\u20ac2"))
    assert got[0, 2] == tok.unk_token_id


@pytest.mark.parametrize(
    ("lines", "dtype", "match"),
    [
        (["123", "12"], np.int64, "line 1"),
        (["12", "34"], np.float32, "dtype"),
        ([[1.0, 2.0]], np.int64, "lines"),
    ],
)
def test_encode_lines_rejects_bad_input(tok, lines, dtype, match):
    with pytest.raises(ValueError, match=match):
        tok.encode_lines(lines, dtype=dtype)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"characters": ""},
        {"characters": None},
        {"characters": "0120"},
        {"characters": "01_", "pad_token": "_"},
    ],
)
def test_bad_alphabet_is_rejected(kwargs):
    with pytest.raises(ValueError, match="characters"):
        CharTokenizer(**kwargs)


def test_save_load_round_trip(tmp_path):
    tok = CharTokenizer(characters="10_", add_eos=True)
    tok.save_pretrained(tmp_path)
    assert (tmp_path / "vocab.json").exists()
    loaded = CharTokenizer.from_pretrained(tmp_path)
    assert loaded.get_vocab() == tok.get_vocab()
    assert loaded.add_eos is True and loaded.characters == "10_"
    assert loaded.encode("1_0") == tok.encode("1_0")


def test_auto_tokenizer_next_to_gpt_config(tmp_path):
    tok = CharTokenizer(characters=ALPHABET)
    tok.save_pretrained(tmp_path)
    GPTConfig(vocab_size=len(tok), n_layers=1, n_heads=1, embed_dim=8, attn_length=8).save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert isinstance(loaded, (CharTokenizer, CharTokenizerFast))  # the package's classes: no remote code
    np.testing.assert_array_equal(loaded.encode_lines(LINES), tok.encode_lines(LINES))
