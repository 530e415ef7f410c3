"""Recurrent storage, stage one (SPEC §3): train a GRU (or LSTM) to repeat sequences of `n_symbols` symbols.

The run generates its repeat dataset on first use (`<save_root>/data/<name>/`, shared by every run with the
same data) unless `dataset_path` names a folder from `data_scripts/make_repeat.py`. Metric: whole-sequence
exact
match (`eval_<set>_accuracy`) on every validation set (`valid`, `valid_norepeat`, `valid_longer_1`, ...), each
plotted in TensorBoard (`eval/<set>_accuracy`, `eval/<set>_loss`).

This module also holds what both recurrent experiments share (data loading, metrics, the trainer). The seed
framework's `per_device_batch_size`, `length_bucketed_sampling` and step learning-rate schedule are generic:
fields of `ExperimentTrainingArguments`, done by `ExperimentTrainer` (docs/framework.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from datasets import DatasetDict, load_dataset
from transformers import EvalPrediction

from ..config import ConfigError, RunConfig, bounded, prob
from ..data.repeat import RepeatCollator, RepeatDataSpec, generate_repeat_dataset
from ..models.recurrent import RecurrentConfig, RecurrentSeq2Seq
from ..registry import Experiment, register
from ..runner import load_init_weights
from ..trainer import ExperimentTrainer


@dataclass
class RepeatModelArguments:
    """The sequence-to-sequence RNN (seed names)."""

    state_size: int = bounded(128, "Hidden size of the RNN (the paper's grid: 48 ... 1024).", lo=1)
    embedding_size: int | None = bounded(None, "Input embedding size (default: state_size).", lo=1)
    cell: Literal["gru", "lstm"] = field(default="gru", metadata={"help": "Recurrent cell."})
    n_layers: int = bounded(1, "Stacked RNN layers.", lo=1)
    no_input: bool = field(
        default=False,
        metadata={
            "help": "Decoder reads a constant 'no input' token instead of the previous symbol "
            "(teacher forcing)."
        },
    )


@dataclass
class RepeatDataArguments:
    """The repeat-sequence data (`hf_experiments.data.repeat`)."""

    n_symbols: int = bounded(30, "Alphabet size.", lo=2)
    min_len: int = bounded(9, "Shortest sequence.", lo=1)
    max_len: int = bounded(9, "Longest sequence (validation adds max_len+1 and max_len+2).", lo=1)
    with_repeats: bool = field(default=True, metadata={"help": "Sequences may repeat a symbol."})
    n_train: int = bounded(1_000_000, "Training sequences (unique).", lo=1)
    n_valid: int = bounded(5000, "Sequences of the main validation set.", lo=1)
    n_valid_extra: int = bounded(1000, "Sequences of each extra validation set (longer / no repeats).", lo=0)
    heldout_fraction: float = prob(0.2, "Share of all sequences reserved for validation (never trained on).")
    generation_seed: int = field(
        default=0, metadata={"help": "Seed of the generated data (not of training)."}
    )
    dataset_path: str | None = field(
        default=None,
        metadata={
            "help": "An existing folder from data_scripts/make_repeat.py; default: generate.",
            "must_exist": True,
        },
    )

    def spec(self) -> RepeatDataSpec:
        return RepeatDataSpec(
            n_symbols=self.n_symbols,
            min_len=self.min_len,
            max_len=self.max_len,
            with_repeats=self.with_repeats,
            n_train=self.n_train,
            n_valid=self.n_valid,
            n_valid_extra=self.n_valid_extra,
            heldout_fraction=self.heldout_fraction,
            seed=self.generation_seed,
        )


def preprocess_logits(logits: Any, labels: torch.Tensor) -> torch.Tensor:
    """Keep only the argmax symbols during evaluation (`(B, T)` instead of `(B, T, V)`)."""
    logits = logits[0] if isinstance(logits, tuple) else logits
    return logits.argmax(-1)


def sequence_accuracy(pred: EvalPrediction) -> dict[str, float]:
    """Whole-sequence exact match, and symbol accuracy, over rows padded with -100."""
    preds, labels = np.asarray(pred.predictions), np.asarray(pred.label_ids)
    valid = labels != -100
    correct = (preds == labels) | ~valid
    return {
        "accuracy": float(correct.all(-1).mean()),
        "symbol_accuracy": float(((preds == labels) & valid).sum() / max(valid.sum(), 1)),
    }


def check_data_args(d: RepeatDataArguments) -> None:
    try:
        d.spec().check()
    except ValueError as e:
        raise ConfigError("min_len/max_len" if "len" in str(e) else "data", None, str(e)) from None


def load_repeat_data(cfg: RunConfig, splits: tuple[str, ...] | None = None) -> DatasetDict:
    """The run's repeat dataset: generated once into `<save_root>/data/<name>` unless `dataset_path` is
    set."""
    d, args = cfg.data, cfg.training
    spec = d.spec()
    path = Path(d.dataset_path) if d.dataset_path else Path(cfg.run.save_root) / "data" / spec.name()
    if not d.dataset_path:
        with args.main_process_first(desc="generate data"):
            if args.process_index == 0 and not path.exists():
                generate_repeat_dataset(path, spec)
    data = load_dataset(str(path))
    if splits is not None:
        data = DatasetDict({k: v for k, v in data.items() if k in splits})
    return data


def build_recurrent_trainer(cfg: RunConfig, model: torch.nn.Module, data: DatasetDict) -> ExperimentTrainer:
    """One evaluation set per validation split: Trainer reports (and TensorBoard plots) each one's
    `eval_<set>_loss` / `eval_<set>_accuracy`."""
    evals = {k: v for k, v in data.items() if k != "train"}
    return ExperimentTrainer(
        model=model,
        args=cfg.training,
        train_dataset=data["train"],
        eval_dataset=evals,
        data_collator=RepeatCollator(),
        compute_metrics=sequence_accuracy,
        preprocess_logits_for_metrics=preprocess_logits,
    )


@register
class GruRepeatExperiment(Experiment):
    """Stage one: an RNN learns to repeat sequences (exact-match accuracy per validation set)."""

    name = "gru_repeat"
    model_args = RepeatModelArguments
    data_args = RepeatDataArguments

    @classmethod
    def validate(cls, cfg: RunConfig) -> None:
        check_data_args(cfg.data)

    def build_data(self) -> DatasetDict:
        return load_repeat_data(self.cfg)

    def build_model(self) -> RecurrentSeq2Seq:
        m, d = self.cfg.model, self.cfg.data
        config = RecurrentConfig(
            n_symbols=d.n_symbols,
            state_size=m.state_size,
            embedding_size=m.embedding_size,
            cell=m.cell,
            n_layers=m.n_layers,
            no_input=m.no_input,
        )
        torch.manual_seed(self.cfg.training.seed)
        model = RecurrentSeq2Seq(config)
        if self.cfg.run.init_checkpt:
            load_init_weights(model, self.cfg.run.init_checkpt)
        return model

    def build_trainer(self, model: RecurrentSeq2Seq, data: DatasetDict) -> ExperimentTrainer:
        return build_recurrent_trainer(self.cfg, model, data)
