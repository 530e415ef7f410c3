"""A model rebuilt from a run's saved `config.json` generates with its KV cache: the Trainer's training-time
`use_cache=False` never reaches a saved config (checkpoints or the final model)."""

from __future__ import annotations

import json

import torch
from transformers import AutoConfig, AutoModelForCausalLM

from tests.helpers import TINY_ARROWS
from tests.mlp.helpers import run_here, write


def test_saved_configs_keep_use_cache_and_generate_uses_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = {**TINY_ARROWS, "save_root": str(tmp_path), "exp_name": "cache", "max_steps": 4, "save_steps": 2}
    assert run_here(write(tmp_path / "c.json", cfg)) == 0
    run = tmp_path / "cache"
    saved = sorted(run.glob("*/config.json"))
    assert {p.parent.name for p in saved} >= {"model", "checkpoint-2", "checkpoint-4"}
    assert all(json.loads(p.read_text())["use_cache"] is True for p in saved)

    config = AutoConfig.from_pretrained(run / "model")  # rebuilt from config.json alone, random weights
    model = AutoModelForCausalLM.from_config(config).eval()
    lengths: list[int] = []
    model.register_forward_pre_hook(lambda m, a, kw: lengths.append(kw["input_ids"].shape[1]), with_kwargs=True)
    with torch.no_grad():
        model.generate(torch.tensor([[1, 3, 4, 5]]), max_new_tokens=5, do_sample=False, pad_token_id=0)
    assert lengths[0] == 4 and set(lengths[1:]) == {1}, lengths  # after the prompt, one new token per step
