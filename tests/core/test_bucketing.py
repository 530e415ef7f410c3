"""Length-bucketed update batches: every row at most once per epoch, reproducible, reshuffled per epoch, and
much less padding than random batching — both for the sampler and for the Trainer's real dataloader."""

from __future__ import annotations

import numpy as np
import torch
from datasets import Dataset

from hf_experiments.core.bucketing import LengthBucketedBatches, dataset_lengths, padding_fraction
from hf_experiments.core.config import ExperimentTrainingArguments
from hf_experiments.core.microbatch import RandomBatches
from hf_experiments.core.trainer import ExperimentTrainer
from hf_experiments.recurrent.configuration_recurrent import RecurrentConfig
from hf_experiments.recurrent.modeling_recurrent import RecurrentSeq2Seq
from hf_experiments.recurrent.repeat_data import RepeatCollator

LENGTHS = np.random.default_rng(0).integers(2, 10, size=5000)  # like the paper's lengths 2..9


def test_each_epoch_uses_rows_at_most_once_and_is_reproducible():
    s = LengthBucketedBatches(LENGTHS, 64, seed=3)
    first = s.batches()
    assert first.shape == (len(LENGTHS) // 64, 64) and len(s) == first.shape[0]
    assert len(np.unique(first)) == first.size
    np.testing.assert_array_equal(LengthBucketedBatches(LENGTHS, 64, seed=3).batches(), first)
    s.set_epoch(1)
    assert not np.array_equal(s.batches(), first)


def test_padding_fraction_drops_versus_random_batching():
    bucketed = padding_fraction(LengthBucketedBatches(LENGTHS, 64, seed=0), LENGTHS)
    random = padding_fraction(RandomBatches(len(LENGTHS), 64, seed=0), LENGTHS)
    assert random > 0.3 and bucketed < 0.1 * random  # measured: 0.39 vs 0.02


def test_batch_order_is_shuffled_not_sorted():
    maxima = [LENGTHS[b].max() for b in LengthBucketedBatches(LENGTHS, 64, seed=0)]
    assert maxima != sorted(maxima) and maxima != sorted(maxima, reverse=True)


def test_lengths_from_column_or_from_input_ids():
    ds = Dataset.from_dict({"input_ids": [[1] * int(L) for L in LENGTHS[:50]], "length": LENGTHS[:50].tolist()})
    np.testing.assert_array_equal(dataset_lengths(ds), LENGTHS[:50])
    np.testing.assert_array_equal(dataset_lengths(ds.remove_columns("length")), LENGTHS[:50])


def _padding_of_trainer_batches(tmp_path, bucketed: bool) -> float:
    lengths = LENGTHS[:640]
    ds = Dataset.from_dict({"input_ids": [[1] * int(L) for L in lengths], "length": lengths.tolist()})
    args = ExperimentTrainingArguments(
        output_dir=str(tmp_path / str(bucketed)),
        per_device_train_batch_size=32,
        per_device_batch_size=16,
        length_bucketed_sampling=bucketed,
        report_to="none",
        seed=0,
    )
    trainer = ExperimentTrainer(
        model=RecurrentSeq2Seq(RecurrentConfig(n_symbols=5, state_size=4)),
        args=args,
        train_dataset=ds,
        data_collator=RepeatCollator(),
    )
    labels = torch.cat([b["labels"].flatten() for b in trainer.get_train_dataloader()])
    assert labels.ne(-100).sum() == lengths[: 640 // 32 * 32].sum()  # every row of the epoch, once
    return float(labels.eq(-100).float().mean())


def test_trainer_dataloader_pads_less_when_bucketed(tmp_path):
    assert _padding_of_trainer_batches(tmp_path, True) < 0.2 * _padding_of_trainer_batches(tmp_path, False)
