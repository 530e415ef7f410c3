"""Backbone resolution and the builtin offline backbone (hf_experiments.compression.backbones)."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers/huggingface_hub read it

import json
import logging
import math
import threading
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from hf_experiments.compression import backbones
from hf_experiments.compression.backbones import (
    INFO_FILE,
    BuiltinSpec,
    build_builtin_backbone,
    builtin_dir,
    resolve_backbone,
)

# Seconds to build: one layer, a 300-token vocabulary, 40 steps on 60k characters of the corpus.
TINY = BuiltinSpec(
    n_layer=1,
    n_embd=32,
    n_head=2,
    n_positions=64,
    vocab_size=300,
    max_steps=40,
    batch_size=8,
    learning_rate=1e-2,
    max_chars=60_000,
)


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Resolve `builtin:tiny-lm` (with the TINY recipe) from two threads at once on an empty cache.

    This exercises the real path: file lock, child-process build, atomic rename.
    Returns (cache_dir, paths, log messages).
    """
    cache = tmp_path_factory.mktemp("hfx_cache")
    mp = pytest.MonkeyPatch()
    mp.setitem(backbones.BUILTIN_SPECS, "tiny-lm", TINY)
    handler = _Records()
    log = logging.getLogger("hf_experiments.compression.backbones")
    old_level = log.level
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    paths: list[str] = []

    def resolve():
        paths.append(resolve_backbone("builtin:tiny-lm", cache_dir=str(cache), progress=False))

    threads = [threading.Thread(target=resolve) for _ in range(2)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        yield cache, paths, handler.messages
    finally:
        log.removeHandler(handler)
        log.setLevel(old_level)
        mp.undo()


def test_concurrent_resolution_builds_once(built):
    cache, paths, messages = built
    assert len(paths) == 2 and paths[0] == paths[1] == str(builtin_dir("tiny-lm", cache))
    assert sum(m.startswith("building builtin backbone") for m in messages) == 1
    # atomic build: only the finished folder (and its lock file) remain, no temp folders
    leftovers = sorted(p.name for p in (cache / "backbones").iterdir())
    assert leftovers == ["tiny-lm-v2", "tiny-lm-v2.lock"]


def test_builtin_loads_with_auto_classes_and_learned(built):
    path = built[1][0]
    model = AutoModelForCausalLM.from_pretrained(path)
    tok = AutoTokenizer.from_pretrained(path)
    assert model.config.model_type == "gpt2" and model.config.n_layer == TINY.n_layer
    assert model.config.vocab_size == len(tok) <= TINY.vocab_size
    assert tok.eos_token_id is not None and tok.pad_token_id is not None and tok.pad_token_id != tok.eos_token_id
    assert tok.bos_token_id == tok.eos_token_id == model.config.eos_token_id
    record = json.loads((Path(path) / INFO_FILE).read_text())
    assert record["spec"]["n_layer"] == TINY.n_layer
    losses = record["train_losses"]
    assert len(losses) >= 5 and losses[-1] < losses[0] - 0.5  # training reduced the loss
    assert record["eval_loss"] < math.log(len(tok))  # better than uniform guessing on held-out windows
    # the reloaded weights are the trained ones: they predict held-out-like text better than chance
    ids = tok("Return a new list containing all items from the iterable in ascending order.", return_tensors="pt")[
        "input_ids"
    ]
    with torch.no_grad():
        loss = model(input_ids=ids, labels=ids).loss.item()
    assert loss < math.log(len(tok))


@pytest.mark.parametrize(
    "text",
    [
        "Return the ceiling of self, as an integer.",
        "  two  spaces,\ttabs\nand newlines\n\n",
        "unicode: naïve café — λx. x² ≠ 😀",
        "def f(x):\n    return {'a': [1, 2]}  # code",
    ],
)
def test_builtin_tokenizer_round_trips(built, text):
    tok = AutoTokenizer.from_pretrained(built[1][0])
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text
    assert tok.decode([*ids, tok.eos_token_id], skip_special_tokens=True) == text


def test_second_resolve_reuses_cache(built):
    cache, paths, _ = built
    folder = Path(paths[0])
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    assert resolve_backbone("builtin:tiny-lm", cache_dir=str(cache)) == paths[0]
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before


def test_build_direct_with_overrides(built, tmp_path):
    out = tmp_path / "bb"
    record = build_builtin_backbone(
        out,
        progress=False,
        corpus_cache_dir=built[0],
        n_layer=1,
        n_embd=16,
        n_head=2,
        n_positions=32,
        vocab_size=280,
        max_steps=5,
        batch_size=4,
        max_chars=20_000,
    )
    assert record["spec"]["max_steps"] == 5 and len(record["train_losses"]) == 5
    assert json.loads((out / INFO_FILE).read_text()) == record
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp folder left
    with pytest.raises(ValueError, match="already exists"):
        build_builtin_backbone(out, n_layer=1)
    with pytest.raises(ValueError, match="n_layers"):
        build_builtin_backbone(tmp_path / "other", n_layers=1)


def test_local_path_and_errors(tmp_path, monkeypatch):
    assert resolve_backbone(str(tmp_path)) == str(tmp_path.resolve())
    with pytest.raises(ValueError, match="does not exist"):
        resolve_backbone(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="builtin:huge-lm"):
        resolve_backbone("builtin:huge-lm", cache_dir=str(tmp_path))
    with pytest.raises(ValueError, match="model_string"):
        resolve_backbone("")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(
        ConnectionError,
        match=r"model_string='gpt2' is a Hugging Face Hub id but the Hub is "
        "unreachable.*model_string='builtin:tiny-lm' or a local path",
    ):
        resolve_backbone("gpt2")
