"""The character tokenizers load anywhere: `CharTokenizerFast` (the `tokenizers` backend) gives the slow
`CharTokenizer`'s ids and decodings on every input (specials in the text, unknown characters, pairs, padding);
both save the same folder (`auto_map` naming both, `tokenization_char.py` beside the vocabulary); a fresh process
in which `hf_experiments` cannot be imported (asserted with `find_spec`) loads the arrows and blotch model folders
and a tokenizer-only folder with `AutoTokenizer.from_pretrained(folder, trust_remote_code=True)` and gets the same
ids, texts and logits; with the package imported no `trust_remote_code` is needed; `tokenizer.json` alone is a
plain `tokenizers` tokenizer with the same ids."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from hf_experiments.arrows import GPTConfig, GPTForCausalLM
from hf_experiments.arrows.experiment import ALPHABETS
from hf_experiments.blotch import BlotchConfig, BlotchModel
from hf_experiments.blotch.tokenization_arith import ARITH_CHARACTERS, arith_tokenizer, encode_rows
from hf_experiments.core.tokenization_char import CharTokenizer, CharTokenizerFast

ROOT = Path(__file__).resolve().parents[2]
# In the alphabets, specials inside the text, characters outside them (one byte, wide, combining, emoji, control).
TEXTS = [
    "",
    " ",
    "00013 * 00101 = 1313",
    "0110_1001",
    "(1+2)*3=9",
    "1<eos>2<pad><bos>3<unk>",
    "<eos",
    "1x2\t3\n4",
    "\u20ac1\U0001f600e\u0301",
]
ALPHABET_CASES = {"primes": ALPHABETS["primes"], "linear": ALPHABETS["linear"], "arith": ARITH_CHARACTERS}


def _pair(characters: str, add_eos: bool = False) -> tuple[CharTokenizer, CharTokenizerFast]:
    return CharTokenizer(characters=characters, add_eos=add_eos), CharTokenizerFast(
        characters=characters, add_eos=add_eos
    )


@pytest.mark.parametrize("add_eos", [False, True])
@pytest.mark.parametrize("name", list(ALPHABET_CASES))
def test_fast_gives_the_slow_ids_and_texts(name, add_eos):
    slow, fast = _pair(ALPHABET_CASES[name], add_eos)
    assert fast.is_fast and not slow.is_fast
    assert fast.get_vocab() == slow.get_vocab() and len(fast) == len(slow) == fast.vocab_size == slow.vocab_size
    assert fast.all_special_ids == slow.all_special_ids
    for key in ("pad_token_id", "bos_token_id", "eos_token_id", "unk_token_id"):
        assert getattr(fast, key) == getattr(slow, key), key
    for text in TEXTS:
        ids = slow.encode(text)
        assert fast.encode(text) == ids, text
        assert fast.tokenize(text) == slow.tokenize(text), text
        assert fast.convert_ids_to_tokens(ids) == slow.convert_ids_to_tokens(ids), text
        for skip in (False, True):
            assert fast.decode(ids, skip_special_tokens=skip) == slow.decode(ids, skip_special_tokens=skip), text
        assert fast(text, "12")["input_ids"] == slow(text, "12")["input_ids"], text  # pairs: [BOS] a (E) b (E)
    batch = [TEXTS[2], TEXTS[4], ""]
    for kwargs in ({"padding": True}, {"padding": "max_length", "max_length": 30, "truncation": True}):
        got, want = fast(batch, **kwargs), slow(batch, **kwargs)
        assert dict(got) == dict(want) and set(got) == {"input_ids", "attention_mask"}
    assert fast.batch_decode(want["input_ids"], skip_special_tokens=True) == slow.batch_decode(
        want["input_ids"], skip_special_tokens=True
    )
    lines = np.array(["0110", "1<=1", "()*9"])
    np.testing.assert_array_equal(fast.encode_lines(lines), slow.encode_lines(lines))


def test_add_eos_set_later_changes_the_fast_post_processor():
    slow, fast = _pair(ARITH_CHARACTERS)
    slow.add_eos = fast.add_eos = True
    assert fast.encode("1+1=2") == slow.encode("1+1=2") == [1, *slow.convert_tokens_to_ids(list("1+1=2")), 2]


def test_encode_rows_of_the_arithmetic_tokenizer_is_backend_independent():
    rows = ["1+2=3", "(4*5)=20", "7"]
    slow, fast = arith_tokenizer(), arith_tokenizer().to_fast()
    for a, b in zip(encode_rows(slow, rows), encode_rows(fast, rows)):
        np.testing.assert_array_equal(a, b)
    assert [r.tolist() for r in encode_rows(fast, rows)] == [[*fast.encode(t), fast.eos_token_id] for t in rows]


def test_added_tokens_survive_the_fast_twin(tmp_path):
    slow = CharTokenizer(characters="01")
    slow.add_tokens(["<sep>"], special_tokens=True)
    slow.save_pretrained(tmp_path)
    for cls in (CharTokenizer, CharTokenizerFast):
        loaded = cls.from_pretrained(tmp_path)
        assert loaded.encode("0<sep>1") == slow.encode("0<sep>1") == [1, 4, 6, 5], cls


def test_both_backends_save_the_same_self_contained_folder(tmp_path):
    slow, fast = _pair(ALPHABETS["primes"], add_eos=True)
    slow.save_pretrained(tmp_path / "slow")
    fast.save_pretrained(tmp_path / "fast")
    names = {"tokenizer_config.json", "vocab.json", "tokenizer.json", "tokenization_char.py"}
    assert {p.name for p in (tmp_path / "slow").iterdir()} == names
    for name in names:
        assert (tmp_path / "slow" / name).read_bytes() == (tmp_path / "fast" / name).read_bytes(), name
    config = json.loads((tmp_path / "slow" / "tokenizer_config.json").read_text())
    assert config["auto_map"] == {
        "AutoTokenizer": ["tokenization_char.CharTokenizer", "tokenization_char.CharTokenizerFast"]
    }
    assert config["tokenizer_class"] == "CharTokenizer" and config["add_eos"] is True
    # the saved code imports the standard library and what transformers itself needs, nothing of this package
    tree = ast.parse((tmp_path / "slow" / "tokenization_char.py").read_text(encoding="utf-8"))
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    third_party = {m.split(".")[0] for m in imported} - set(sys.stdlib_module_names) - {"__future__"}
    assert third_party == {"numpy", "tokenizers", "transformers"}
    for cls in (CharTokenizer, CharTokenizerFast):
        loaded = cls.from_pretrained(tmp_path / "slow")
        assert type(loaded) is cls and loaded.add_eos is True and loaded.characters == ALPHABETS["primes"]
        assert [loaded.encode(t) for t in TEXTS] == [slow.encode(t) for t in TEXTS]


def test_tokenizer_json_alone_is_a_plain_tokenizers_tokenizer(tmp_path):
    slow = arith_tokenizer()
    slow.save_pretrained(tmp_path)
    plain = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    generic = PreTrainedTokenizerFast(tokenizer_file=str(tmp_path / "tokenizer.json"))
    for text in TEXTS:
        assert plain.encode(text).ids == generic.encode(text) == slow.encode(text), text
        assert plain.decode(slow.encode(text), skip_special_tokens=False) == slow.decode(slow.encode(text))


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> dict:
    """An arrows and a blotch model folder (model + tokenizer, as a run's `model/`), a tokenizer-only folder,
    and what the package's classes give on them, in `references.pt`."""
    root = tmp_path_factory.mktemp("remote_tokenizers")
    torch.manual_seed(0)
    primes = CharTokenizer(characters=ALPHABETS["primes"])
    arith = arith_tokenizer()
    gpt = GPTForCausalLM(GPTConfig(vocab_size=len(primes), n_layers=1, n_heads=2, embed_dim=16, attn_length=32))
    blotch = BlotchModel(BlotchConfig(vocab_size=len(arith), n_positions=32, n_embd=16, n_layer=1, n_head=2))
    refs = {}
    for name, tok, model in (("arrows", primes, gpt), ("blotch", arith, blotch), ("tokenizer_only", primes, None)):
        folder = root / name
        tok.save_pretrained(folder)
        ref = {"folder": str(folder), "texts": TEXTS, "ids": [tok.encode(t) for t in TEXTS]}
        ref["decoded"] = [tok.decode(ids, skip_special_tokens=True) for ids in ref["ids"]]
        if model is not None:
            model.eval().save_pretrained(folder)
            batch = tok(TEXTS[2:5], padding=True, return_tensors="pt")
            with torch.no_grad():
                ref["logits"] = model(**batch).logits
        refs[name] = ref
    torch.save(refs, root / "references.pt")
    return {"root": root, "refs": refs}


# Runs in a fresh interpreter: the import blocker comes before anything else imports.
_BLOCKED = r"""
import importlib.util, sys
from pathlib import Path

root, references_path = Path(sys.argv[1]).resolve(), sys.argv[2]
sys.meta_path[:] = [
    f for f in sys.meta_path
    if not (getattr(f, "__module__", "") or type(f).__module__).startswith("__editable__")
]
sys.path[:] = [p for p in sys.path if not p.startswith("__editable__") and Path(p or ".").resolve() != root]
sys.path_importer_cache.clear()
assert importlib.util.find_spec("hf_experiments") is None, "hf_experiments is still importable"

import json
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

results = {}
for name, ref in torch.load(references_path, weights_only=False).items():
    tok = AutoTokenizer.from_pretrained(ref["folder"], trust_remote_code=True)
    slow = type(tok).slow_tokenizer_class.from_pretrained(ref["folder"])
    ids = [tok.encode(t) for t in ref["texts"]]
    out = {
        "class": [type(tok).__module__.split(".")[0], type(tok).__name__, tok.is_fast],
        "slow_class": [type(slow).__module__.split(".")[0], type(slow).__name__],
        "ids": ids == ref["ids"] and [slow.encode(t) for t in ref["texts"]] == ref["ids"],
        "decoded": [tok.decode(i, skip_special_tokens=True) for i in ids] == ref["decoded"],
    }
    if "logits" in ref:
        model = AutoModelForCausalLM.from_pretrained(ref["folder"], trust_remote_code=True).eval()
        with torch.no_grad():
            logits = model(**tok(ref["texts"][2:5], padding=True, return_tensors="pt")).logits
        out["logits"] = bool(torch.allclose(logits, ref["logits"], atol=1e-6, rtol=0))
    results[name] = out
assert "hf_experiments" not in sys.modules
print("RESULTS", json.dumps(results))
"""


def test_saved_folders_load_through_auto_tokenizer_without_the_package(saved, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    work = tmp_path / "elsewhere"
    work.mkdir()
    res = subprocess.run(
        [sys.executable, "-c", _BLOCKED, str(ROOT), str(saved["root"] / "references.pt")],
        capture_output=True,
        text=True,
        cwd=work,
        env=env,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-4000:]
    results = json.loads(res.stdout.split("RESULTS ", 1)[1])
    assert set(results) == {"arrows", "blotch", "tokenizer_only"}
    for name, out in results.items():
        assert out["class"] == ["transformers_modules", "CharTokenizerFast", True], name
        assert out["slow_class"] == ["transformers_modules", "CharTokenizer"], name
        assert out["ids"] is True and out["decoded"] is True, name
        assert out.get("logits", True) is True, name


def test_with_the_package_imported_no_trust_remote_code_is_needed(saved):
    for name, ref in saved["refs"].items():
        tok = AutoTokenizer.from_pretrained(ref["folder"])
        assert type(tok) in (CharTokenizer, CharTokenizerFast), name  # the package's classes, not remote copies
        assert [tok.encode(t) for t in TEXTS] == ref["ids"], name
        assert [tok.decode(i, skip_special_tokens=True) for i in ref["ids"]] == ref["decoded"], name


@pytest.mark.parametrize("run", ["arrows_tiny", "blotch_cache_tiny"])
def test_folders_saved_before_the_fast_tokenizer_load_with_it(run):
    """A `model/` of the commit before (slow tokenizer only, no `auto_map`) loads with either class, same ids."""
    folder = ROOT / "tests" / "fixtures" / "pre_layout" / run / "model"
    slow, fast = CharTokenizer.from_pretrained(folder), CharTokenizerFast.from_pretrained(folder)
    assert fast.get_vocab() == slow.get_vocab()
    for text in TEXTS:
        assert fast.encode(text) == slow.encode(text), text
