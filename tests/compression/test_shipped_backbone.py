"""The built-in backbone that ships with the package (`hf_experiments/compression/weights/tiny-lm/`).

Kept apart from test_backbones.py, whose module fixture swaps `BUILTIN_SPECS["tiny-lm"]` for a tiny recipe."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import dataclasses
import json

import numpy as np
import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from hf_experiments.compression import backbones
from hf_experiments.compression.backbones import INFO_FILE, resolve_backbone


def test_shipped_tiny_lm_is_the_current_recipe_and_is_used_without_a_build(tmp_path):
    """The weights in the package are what `builtin:tiny-lm` means: its recorded recipe is BUILTIN_SPECS (a
    changed recipe without `python data_scripts/build_backbone.py --replace` fails here), and resolving it neither
    builds nor writes anything."""
    shipped = backbones.shipped_dir("tiny-lm")
    assert shipped is not None, "hf_experiments/compression/weights/tiny-lm is missing or not the current recipe"
    assert resolve_backbone("builtin:tiny-lm", cache_dir=str(tmp_path / "cache"), progress=False) == str(shipped)
    assert not (tmp_path / "cache").exists()
    size = sum(f.stat().st_size for f in shipped.iterdir())
    assert size < 20 * 2**20
    record = json.loads((shipped / INFO_FILE).read_text())
    assert record["spec"] == dataclasses.asdict(backbones.BUILTIN_SPECS["tiny-lm"])
    assert record["eval_loss"] < record["unigram_loss"] - 1.0  # a real LM, far below the unigram loss


def test_shipped_tiny_lm_predicts_after_bos_no_worse_than_unigram(tmp_path):
    """`low` scores the first predicted token right after a lone BOS: the backbone must predict the marginal
    distribution there (no worse than the unigram model), else part of the context gap is an artifact."""
    from datasets import Dataset

    from hf_experiments.compression.corpus import embedded_corpus
    from hf_experiments.compression.text_data import hash_split, window_dataset

    shipped = backbones.shipped_dir("tiny-lm")
    record = json.loads((shipped / INFO_FILE).read_text())
    assert record["first_token_loss"] <= record["unigram_loss"]
    # recomputed from the shipped weights on the held-out documents (the record is not taken on trust)
    spec = backbones.BUILTIN_SPECS["tiny-lm"]
    val = hash_split(Dataset.from_dict({"text": embedded_corpus(cache_dir=tmp_path)}), spec.val_fraction)["validation"]
    tok = AutoTokenizer.from_pretrained(shipped)
    windows = window_dataset(val, tok, spec.n_positions, stride=spec.n_positions - 1, bos_id=tok.bos_token_id)
    model = AutoModelForCausalLM.from_pretrained(shipped)
    first = backbones._first_token_loss(model, np.asarray(windows["input_ids"]), 64)
    assert first == pytest.approx(record["first_token_loss"], abs=1e-3)
