"""`per_device_batch_size`: micro-batch plans, the batch sampler, and the property that matters — an update
from uneven micro-batches equals the update from one big batch (exact weighting), with a negative control."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from datasets import Dataset
from transformers import Trainer

from hf_experiments.core.config import ExperimentTrainingArguments
from hf_experiments.core.microbatch import (
    MicrobatchSampler,
    RandomBatches,
    microbatch_sizes,
    plan_gradient_accumulation,
)
from hf_experiments.core.trainer import ExperimentTrainer
from hf_experiments.recurrent.configuration_recurrent import RecurrentConfig
from hf_experiments.recurrent.modeling_recurrent import RecurrentSeq2Seq
from hf_experiments.recurrent.repeat_data import RepeatCollator


@pytest.mark.parametrize("batch,cap", [(10, 4), (7, 7), (7, 100), (256, 60), (5, 1), (9, 2)])
def test_plan_is_as_few_near_equal_micro_batches_as_the_cap_allows(batch, cap):
    sizes = microbatch_sizes(batch, cap)
    assert sum(sizes) == batch and max(sizes) <= cap and max(sizes) - min(sizes) <= 1
    assert len(sizes) == -(-batch // cap)
    assert microbatch_sizes(10, 4) == [4, 3, 3]


def test_plan_rejects_bad_values_and_explicit_accumulation():
    with pytest.raises(ValueError, match="per_device_batch_size=0"):
        microbatch_sizes(8, 0)
    with pytest.raises(ValueError, match="gradient_accumulation_steps=2"):
        plan_gradient_accumulation(8, 3, 2)
    assert plan_gradient_accumulation(8, None, 2) == 2 and plan_gradient_accumulation(8, 3) == 3


def test_sampler_splits_each_update_batch_across_ranks_and_micro_batches():
    lengths = np.random.default_rng(0).integers(1, 9, size=50)
    per_rank = [
        list(MicrobatchSampler(RandomBatches(50, 12, seed=1), [2, 2, 2], rank=r, world_size=2, lengths=lengths))
        for r in range(2)
    ]
    updates = list(RandomBatches(50, 12, seed=1))
    assert all(len(p) == 4 * 3 for p in per_rank)
    for u, update in enumerate(updates):
        micro = [per_rank[r][3 * u + k] for r in range(2) for k in range(3)]
        assert sorted(i for m in micro for i in m) == sorted(update.tolist())  # disjoint and complete
        for r in range(2):
            rows = [i for k in range(3) for i in per_rank[r][3 * u + k]]
            assert list(lengths[rows]) == sorted(lengths[rows], reverse=True)  # sorted before splitting


def _data(n: int = 10) -> Dataset:
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 7, size=n)
    ids = [rng.integers(0, 5, size=L).tolist() for L in lengths]
    return Dataset.from_dict({"input_ids": ids, "length": lengths.tolist()})


def _one_update(
    tmp_path, cap: int | None, data: Dataset, mean_loss: bool = False, trainer_cls: type = ExperimentTrainer
) -> tuple[dict[str, torch.Tensor], int]:
    torch.manual_seed(0)
    model = RecurrentSeq2Seq(RecurrentConfig(n_symbols=5, state_size=8))
    if mean_loss:
        model.accepts_loss_kwargs = False  # the loss is then this micro-batch's mean
    args = ExperimentTrainingArguments(
        output_dir=str(tmp_path / f"c{cap}{mean_loss}{trainer_cls.__name__}"),
        per_device_train_batch_size=10,
        per_device_batch_size=cap,
        max_steps=1,
        optim="sgd",
        learning_rate=1.0,
        lr_scheduler_type="constant",
        max_grad_norm=0,
        report_to="none",
        save_strategy="no",
        seed=0,
        disable_tqdm=True,
    )
    trainer = trainer_cls(model=model, args=args, train_dataset=data, data_collator=RepeatCollator())
    trainer.train()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, args.gradient_accumulation_steps


def test_uneven_micro_batches_give_the_full_batch_update(tmp_path):
    """10 rows of different lengths: micro-batches 4, 3, 3 (token counts differ) == one batch of 10."""
    data = _data()
    big, steps_big = _one_update(tmp_path, 10, data)
    small, steps_small = _one_update(tmp_path, 4, data)
    assert (steps_big, steps_small) == (1, 3)
    for k in big:
        torch.testing.assert_close(small[k], big[k], rtol=1e-5, atol=1e-6)


class _PlainWeighting(ExperimentTrainer):
    """Negative control: Trainer's own weighting (every micro-batch's mean counts 1 / n_micro)."""

    def compute_loss(self, *args, **kwargs):
        return Trainer.compute_loss(self, *args, **kwargs)


def test_mean_loss_models_are_reweighted_by_rows(tmp_path):
    """A model returning a mean loss (rows of equal length): micro-batches 4, 3, 3 weighted 4/10, 3/10, 3/10
    equal the full batch; Trainer's plain 1/3 each does not."""
    rng = np.random.default_rng(1)
    data = Dataset.from_dict({"input_ids": rng.integers(0, 5, size=(10, 4)).tolist(), "length": [4] * 10})
    big, _ = _one_update(tmp_path, 10, data, mean_loss=True)
    small, _ = _one_update(tmp_path, 4, data, mean_loss=True)
    plain, _ = _one_update(tmp_path, 4, data, mean_loss=True, trainer_cls=_PlainWeighting)
    for k in big:
        torch.testing.assert_close(small[k], big[k], rtol=1e-5, atol=1e-6)
    assert any(not torch.allclose(plain[k], big[k], rtol=1e-5, atol=1e-6) for k in big)
