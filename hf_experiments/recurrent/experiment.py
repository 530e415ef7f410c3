"""Recurrent storage, stage one (RobertCsordas/onion_representations): train a GRU (or LSTM) to repeat sequences
of `n_symbols` symbols.

The run generates its repeat dataset on first use unless `dataset_path` names a folder from
`data_scripts/make_repeat.py`; the metric is whole-sequence exact match on every validation set. This module
also holds what both recurrent experiments share (data loading, metrics, the trainer).

Design: `docs/recurrent_storage.md`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import DatasetDict, load_dataset
from transformers import EvalPrediction

from hf_experiments.core.config import ConfigError, RunConfig
from hf_experiments.core.experiment import Experiment
from hf_experiments.core.model_helpers import load_init_weights, model_config
from hf_experiments.core.trainer import ExperimentTrainer

from .configuration_intervention import InterventionConfig
from .configuration_recurrent import RecurrentConfig
from .modeling_intervention import RecurrentIntervention
from .modeling_recurrent import RecurrentSeq2Seq
from .recurrent_config import (
    InterventionDataArguments,
    InterventionModelArguments,
    RepeatDataArguments,
    RepeatModelArguments,
)
from .repeat_data import RepeatCollator, generate_repeat_dataset


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


class RepeatExperiment(Experiment):
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
        config = model_config(RecurrentConfig, m, n_symbols=d.n_symbols)
        torch.manual_seed(self.cfg.training.seed)
        model = RecurrentSeq2Seq(config)
        if self.cfg.run.init_checkpt:
            load_init_weights(model, self.cfg.run.init_checkpt)
        return model

    def build_trainer(self, model: RecurrentSeq2Seq, data: DatasetDict) -> ExperimentTrainer:
        return build_recurrent_trainer(self.cfg, model, data)


EVAL_SETS = ("valid", "valid_norepeat")


class InterventionExperiment(Experiment):
    """Stage two: intervention accuracy of a linear or onion repair of a frozen RNN's state (or a probe's)."""

    name = "gru_intervention"
    model_args = InterventionModelArguments
    data_args = InterventionDataArguments

    @classmethod
    def validate(cls, cfg: RunConfig) -> None:
        check_data_args(cfg.data)
        path = Path(cfg.model.gru_model)
        if not (path / "config.json").is_file():
            raise ConfigError(
                "gru_model",
                str(path),
                "a saved model folder with config.json (a gru_repeat run's model/ or checkpoint-N/)",
            )
        rc = RecurrentConfig.from_pretrained(str(path))
        if rc.n_symbols != cfg.data.n_symbols:
            raise ConfigError("n_symbols", cfg.data.n_symbols, f"{rc.n_symbols}, the trained model's alphabet")

    def build_data(self) -> DatasetDict:
        return load_repeat_data(self.cfg, splits=("train", *EVAL_SETS))

    def build_model(self) -> RecurrentIntervention:
        m, d = self.cfg.model, self.cfg.data
        rnn = RecurrentSeq2Seq.from_pretrained(m.gru_model)
        torch.manual_seed(self.cfg.training.seed)
        config = model_config(
            InterventionConfig,
            m,
            drop=("gru_model", "intervention"),
            method=m.intervention,
            n_positions=d.max_len,
            recurrent=rnn.config.to_dict(),
        )
        model = RecurrentIntervention(config, rnn=rnn)  # the RNN keeps its trained weights; only the rest is new
        if self.cfg.run.init_checkpt:
            load_init_weights(model, self.cfg.run.init_checkpt)
        return model

    def build_trainer(self, model: RecurrentIntervention, data: DatasetDict) -> ExperimentTrainer:
        return build_recurrent_trainer(self.cfg, model, data)
