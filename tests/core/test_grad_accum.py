"""Gradient accumulation is exact: batch 8 x 1 step equals batch 1 x 8 accumulated micro-batches, also when rows
carry different numbers of predicted tokens; and the columns our models need survive `remove_unused_columns`."""

from __future__ import annotations

import numpy as np
import torch
from datasets import Dataset

from hf_experiments.arrows.configuration_gpt import GPTConfig
from hf_experiments.arrows.modeling_gpt import GPTForCausalLM
from hf_experiments.core.config import ExperimentTrainingArguments
from hf_experiments.core.trainer import ExperimentTrainer


def _data(n: int = 8, t: int = 12) -> Dataset:
    rng = np.random.default_rng(0)
    ids = rng.integers(4, 20, size=(n, t))
    labels = ids.copy()
    for i in range(n):  # row i predicts only its last i+2 tokens: very unequal token counts per row
        labels[i, : t - (i + 2)] = -100
    return Dataset.from_dict({"input_ids": ids.tolist(), "labels": labels.tolist()})


def _step(tmp_path, batch: int, accum: int, accepts_loss_kwargs: bool = True) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = GPTForCausalLM(GPTConfig(vocab_size=20, n_layers=2, n_heads=2, embed_dim=32, attn_length=16, dropout=0.0))
    model.accepts_loss_kwargs = accepts_loss_kwargs
    args = ExperimentTrainingArguments(
        output_dir=str(tmp_path / f"b{batch}a{accum}{accepts_loss_kwargs}"),
        per_device_train_batch_size=batch,
        gradient_accumulation_steps=accum,
        max_steps=1,
        optim="sgd",
        learning_rate=1.0,
        report_to="none",
        save_strategy="no",
        lr_scheduler_type="constant",
        seed=0,
        disable_tqdm=True,
    )
    trainer = ExperimentTrainer(model=model, args=args, train_dataset=_data())
    trainer.train()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_accumulated_micro_batches_equal_one_big_batch(tmp_path):
    big, small = _step(tmp_path, 8, 1), _step(tmp_path, 1, 8)
    for k in big:
        torch.testing.assert_close(big[k], small[k], rtol=1e-5, atol=1e-6)


def test_negative_control_per_micro_batch_means_differ(tmp_path):
    """A model that ignores `num_items_in_batch` averages per micro-batch: rows then weigh unequally."""
    big, small = _step(tmp_path, 8, 1), _step(tmp_path, 1, 8, accepts_loss_kwargs=False)
    assert any(not torch.allclose(big[k], small[k], rtol=1e-5, atol=1e-6) for k in big)


def test_needed_columns_survive_remove_unused_columns(tmp_path):
    model = GPTForCausalLM(GPTConfig(vocab_size=20, n_layers=1, n_heads=2, embed_dim=16, attn_length=16))
    data = _data().add_column("notes", ["x"] * 8)  # an extra column the model does not take
    args = ExperimentTrainingArguments(
        output_dir=str(tmp_path / "cols"), per_device_train_batch_size=4, report_to="none", remove_unused_columns=True
    )
    batch = next(iter(ExperimentTrainer(model=model, args=args, train_dataset=data).get_train_dataloader()))
    assert set(batch) == {"input_ids", "labels"}
