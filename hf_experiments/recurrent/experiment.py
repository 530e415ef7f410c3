"""Recurrent storage, stage one (RobertCsordas/onion_representations): train a GRU (or LSTM) to repeat sequences
of `n_symbols` symbols.

The run generates its repeat dataset on first use unless `dataset_path` names a folder from
`data_scripts/make_repeat.py`; the metric is whole-sequence exact match on every validation set, plotted over
the steps in the run folder's `accuracy.png` (numbers in `accuracy.csv`). This module also holds what both
recurrent experiments share (data loading, metrics, the trainer, the final evaluation).

Design: `docs/recurrent_storage.md`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import DatasetDict, load_dataset
from filelock import FileLock
from transformers import EvalPrediction

from hf_experiments.core.config import ConfigError, RunConfig
from hf_experiments.core.dataset_io import check_dataset_folder
from hf_experiments.core.experiment import Experiment
from hf_experiments.core.model_helpers import check_trainable, load_init_weights, model_config
from hf_experiments.core.plots import figure, log_history_rows, write_csv
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
        d.spec().check(counts=not d.dataset_path)  # a given dataset_path: the generation counts are unused
    except ValueError as e:  # "<key>=<value> ..." names the key; the length checks name both lengths
        key = str(e).split("=", 1)[0] if str(e).split("=", 1)[0].isidentifier() else "data"
        raise ConfigError(key, getattr(d, key, None), str(e)) from None


def check_dataset_path(d: RepeatDataArguments, splits: tuple[str, ...]) -> None:
    """A given `dataset_path` is a repeat dataset with these splits, of symbols below `n_symbols`."""
    if not d.dataset_path:
        return
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    files = check_dataset_folder("dataset_path", d.dataset_path, splits, ("input_ids", "length"))
    for split, found in files.items():
        for file in found:
            ids = pc.list_flatten(pq.read_table(file, columns=["input_ids"])["input_ids"])
            lo, hi = pc.min_max(ids).values()
            if lo.as_py() is not None and (lo.as_py() < 0 or hi.as_py() >= d.n_symbols):
                raise ConfigError(
                    "dataset_path",
                    d.dataset_path,
                    f"sequences of symbols 0..{d.n_symbols - 1} "
                    f"(n_symbols={d.n_symbols}); its {split!r} split holds {hi.as_py()}",
                )


def load_repeat_data(cfg: RunConfig, splits: tuple[str, ...] | None = None) -> DatasetDict:
    """The run's repeat dataset: generated once into `<save_root>/data/<name>` unless `dataset_path` is
    set."""
    d, args = cfg.data, cfg.training
    spec = d.spec()
    path = Path(d.dataset_path) if d.dataset_path else Path(cfg.run.save_root) / "data" / spec.name()
    if not d.dataset_path:
        # The lock: runs started together on one save_root (a grid's parallel chains, stage one and two) share
        # the folder; the second waits and then finds it written.
        path.parent.mkdir(parents=True, exist_ok=True)
        with args.main_process_first(desc="generate data"), FileLock(f"{path}.lock"):
            if args.process_index == 0 and not path.exists():
                generate_repeat_dataset(path, spec, args=cfg.training)
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


def plot_accuracy(run_dir: Path, log_history: list[dict[str, Any]], sets: list[str]) -> Path:
    """`accuracy.png` in the run folder: whole-sequence (exact match) and symbol accuracy of every validation set
    at each evaluation, the final one included; the numbers in `accuracy.csv` (one row per evaluated step)."""
    metrics = (("accuracy", "exact match (whole sequence)"), ("symbol_accuracy", "symbol accuracy"))
    fields = [f"eval_{s}_{m}" for s in sets for m, _ in metrics]
    rows = log_history_rows(log_history, fields)
    write_csv(run_dir / "accuracy.csv", rows, ["step", *fields])
    with figure(run_dir / "accuracy.png", 1, 2, figsize=(11, 3.8), sharey=True) as (_, axes):
        for ax, (metric, title) in zip(axes, metrics):
            for i, name in enumerate(sets):
                points = [
                    (r["step"], r[f"eval_{name}_{metric}"]) for r in rows if r[f"eval_{name}_{metric}"] is not None
                ]
                if points:
                    ax.plot(*zip(*points), marker="o", ms=3, color=f"C{i}", label=name)
            ax.set_xlabel("optimizer step")
            ax.set_ylim(-0.02, 1.02)
            ax.set_title(title)
        axes[0].set_ylabel("accuracy")
        axes[1].legend(fontsize=8, title="validation set", loc="center left", bbox_to_anchor=(1.02, 0.5))
    return run_dir / "accuracy.png"


def evaluate_recurrent(cfg: RunConfig, trainer: ExperimentTrainer) -> dict[str, float]:
    """The final evaluation of every validation set, then the accuracy curves over the run (main process)."""
    metrics = trainer.evaluate()
    sets = list(trainer.eval_dataset) if isinstance(trainer.eval_dataset, dict) else []
    if trainer.is_world_process_zero() and sets:
        plot_accuracy(cfg.run_dir, trainer.state.log_history, sets)
    return metrics


class RepeatExperiment(Experiment):
    """Stage one: an RNN learns to repeat sequences (exact-match accuracy per validation set)."""

    name = "gru_repeat"
    model_args = RepeatModelArguments
    data_args = RepeatDataArguments

    @classmethod
    def validate(cls, cfg: RunConfig) -> None:
        check_data_args(cfg.data)
        check_dataset_path(cfg.data, ("train", "valid"))
        check_trainable(
            RecurrentSeq2Seq,
            model_config(RecurrentConfig, cfg.model, n_symbols=cfg.data.n_symbols),
            cfg.run.init_checkpt,
        )

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

    def evaluate(self, trainer: ExperimentTrainer, data: DatasetDict) -> dict[str, float]:
        return evaluate_recurrent(self.cfg, trainer)


EVAL_SETS = ("valid", "valid_norepeat")


def intervention_config(cfg: RunConfig, rnn_config: RecurrentConfig) -> InterventionConfig:
    """The intervention's config: its arguments, the data's `max_len` positions and the frozen RNN's config."""
    return model_config(
        InterventionConfig,
        cfg.model,
        drop=("gru_model", "intervention"),
        method=cfg.model.intervention,
        n_positions=cfg.data.max_len,
        recurrent=rnn_config.to_dict(),
    )


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
        check_dataset_path(cfg.data, ("train", *EVAL_SETS))
        check_trainable(RecurrentIntervention, intervention_config(cfg, rc), cfg.run.init_checkpt)

    def build_data(self) -> DatasetDict:
        return load_repeat_data(self.cfg, splits=("train", *EVAL_SETS))

    def build_model(self) -> RecurrentIntervention:
        rnn = RecurrentSeq2Seq.from_pretrained(self.cfg.model.gru_model)
        torch.manual_seed(self.cfg.training.seed)
        # the RNN keeps its trained weights; only the rest is new
        model = RecurrentIntervention(intervention_config(self.cfg, rnn.config), rnn=rnn)
        if self.cfg.run.init_checkpt:
            load_init_weights(model, self.cfg.run.init_checkpt)
        return model

    def build_trainer(self, model: RecurrentIntervention, data: DatasetDict) -> ExperimentTrainer:
        return build_recurrent_trainer(self.cfg, model, data)

    def evaluate(self, trainer: ExperimentTrainer, data: DatasetDict) -> dict[str, float]:
        return evaluate_recurrent(self.cfg, trainer)
