"""The per-step fixes of `hf_experiments.core.step_overhead` and `ExperimentTrainer.floating_point_ops`: the
same answers as the code they shortcut, without its per-step lookups, and contract checks that fail when
accelerate / transformers change what they shortcut."""

from __future__ import annotations

import importlib.util

import accelerate.optimizer
import accelerate.utils.imports
import pytest
import torch
from accelerate import Accelerator
from datasets import Dataset
from transformers import Trainer

from hf_experiments.arrows.configuration_gpt import GPTConfig
from hf_experiments.arrows.modeling_gpt import GPTForCausalLM
from hf_experiments.core.config import ExperimentTrainingArguments
from hf_experiments.core.step_overhead import cache_package_lookups
from hf_experiments.core.trainer import ExperimentTrainer


@pytest.fixture
def lomo_lookups(monkeypatch) -> list[str]:
    """Names `importlib.util.find_spec` is asked for 'lomo_optim' while the test runs."""
    asked: list[str] = []
    real = importlib.util.find_spec

    def counting(name, *args, **kwargs):
        if name == "lomo_optim":
            asked.append(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", counting)
    return asked


def _optimizer_steps(n: int, lookups: list[str]) -> None:
    """`n` steps of a prepared optimizer, `lookups` cleared after preparing (which asks once)."""
    layer = torch.nn.Linear(3, 1)
    optimizer = Accelerator().prepare_optimizer(torch.optim.SGD(layer.parameters(), lr=0.1))  # any device
    lookups.clear()
    for _ in range(n):
        layer(torch.ones(2, 3)).sum().backward()
        optimizer.step()


def test_contract_accelerated_optimizer_step_still_asks_for_lomo():
    """The patch replaces the module global `step` reads; when accelerate drops (or renames) the call, this
    fails: then `cache_package_lookups` is dead code to delete (or to point at the new name)."""
    assert "is_lomo_available" in accelerate.optimizer.AcceleratedOptimizer.step.__code__.co_names
    assert hasattr(accelerate.optimizer, "is_lomo_available")


def test_negative_control_unpatched_step_looks_on_disk_every_time(monkeypatch, lomo_lookups):
    monkeypatch.setattr(accelerate.optimizer, "is_lomo_available", accelerate.utils.imports.is_lomo_available)
    _optimizer_steps(3, lomo_lookups)
    assert len(lomo_lookups) == 6  # twice per step


def test_cached_lookup_same_answer_and_no_lookups_per_step(monkeypatch, lomo_lookups):
    monkeypatch.setattr(accelerate.optimizer, "is_lomo_available", accelerate.utils.imports.is_lomo_available)
    cache_package_lookups()
    cache_package_lookups()  # idempotent: one cache, not a cache of a cache
    patched = accelerate.optimizer.is_lomo_available
    assert patched.__wrapped__ is accelerate.utils.imports.is_lomo_available
    assert patched() == accelerate.utils.imports.is_lomo_available()
    _optimizer_steps(3, lomo_lookups)
    assert lomo_lookups == []


def _trainer(tmp_path) -> ExperimentTrainer:
    torch.manual_seed(0)
    model = GPTForCausalLM(GPTConfig(vocab_size=8, n_layers=2, n_heads=1, embed_dim=16, attn_length=8, dropout=0.0))
    ids = [[i % 8, (i + 1) % 8, (i + 2) % 8, (i + 3) % 8] for i in range(32)]
    args = ExperimentTrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=8, max_steps=3, save_strategy="no",
        report_to="none", torch_threads="1",
    )  # fmt: skip
    return ExperimentTrainer(model=model, args=args, train_dataset=Dataset.from_dict({"input_ids": ids, "labels": ids}))


def test_flop_count_equals_the_trainers_and_counts_parameters_once(tmp_path, monkeypatch):
    trainer = _trainer(tmp_path)
    inputs = {"input_ids": torch.zeros(8, 4, dtype=torch.long)}
    expected = Trainer.floating_point_ops(trainer, inputs)
    assert expected > 0
    calls = []
    real = trainer.model.num_parameters
    monkeypatch.setattr(trainer.model, "num_parameters", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert [trainer.floating_point_ops(inputs) for _ in range(3)] == [expected] * 3
    assert len(calls) == 1
    assert trainer.floating_point_ops({"other": inputs["input_ids"]}) == Trainer.floating_point_ops(
        trainer, {"other": inputs["input_ids"]}
    )


def test_total_flos_of_a_run_unchanged(tmp_path):
    """A whole run's `total_flos` equals the Trainer's per-step formula summed over its steps."""
    trainer = _trainer(tmp_path)
    trainer.train()
    per_step = Trainer.floating_point_ops(trainer, {"input_ids": torch.zeros(8, 4, dtype=torch.long)})
    assert trainer.state.total_flos == 3 * per_step


def test_building_an_experiment_trainer_applies_the_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(accelerate.optimizer, "is_lomo_available", accelerate.utils.imports.is_lomo_available)
    _trainer(tmp_path)
    assert hasattr(accelerate.optimizer.is_lomo_available, "cache_info")


def test_flop_count_follows_a_swapped_model_and_a_new_run(tmp_path):
    trainer = _trainer(tmp_path)
    inputs = {"input_ids": torch.zeros(8, 4, dtype=torch.long)}
    small = trainer.floating_point_ops(inputs)
    trainer.model = GPTForCausalLM(GPTConfig(vocab_size=8, n_layers=3, n_heads=1, embed_dim=16, attn_length=8))
    assert trainer.floating_point_ops(inputs) == Trainer.floating_point_ops(trainer, inputs) > small
    trainer.train()  # counts afresh for the run, and keeps no reference to the model after it
    assert trainer.state.total_flos == 3 * Trainer.floating_point_ops(trainer, {"input_ids": torch.zeros(8, 4)})
    assert trainer._flop_params is None
