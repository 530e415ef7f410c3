"""Recurrent storage, stage two (SPEC §3): freeze an RNN trained by `gru_repeat` and train an intervention on
its
state (`linear` or `onion`) or a decoding probe (`probe_mlp`, `probe_gru`); see
`hf_experiments.interventions`.

`gru_model` names the trained RNN (a `gru_repeat` run's `model/` folder or one of its checkpoints). The data
are repeat sequences as in stage one, by default of exactly 9 symbols (the original trained and measured the
interventions on `max_len`-long sequences); the validation sets are `valid` and `valid_norepeat`. Metric:
intervention accuracy = exact match of the repaired state's output (`eval_valid_accuracy`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from datasets import DatasetDict

from ..config import ConfigError, RunConfig, bounded, prob
from ..interventions import RecurrentIntervention
from ..models.recurrent import RecurrentConfig, RecurrentSeq2Seq
from ..registry import Experiment, register
from ..runner import load_init_weights
from ..trainer import ExperimentTrainer
from .gru_repeat import RepeatDataArguments, build_recurrent_trainer, check_data_args, load_repeat_data


@dataclass
class InterventionModelArguments:
    """Which trained RNN, and what is trained on top of it."""

    gru_model: str = field(
        metadata={
            "help": "Folder of the trained RNN (a gru_repeat run's model/ or checkpoint).",
            "must_exist": True,
        }
    )
    intervention: Literal["linear", "onion", "probe_mlp", "probe_gru"] = field(
        default="onion", metadata={"help": "Intervention on the state, or a decoding probe."}
    )
    mask_reg: float = bounded(0.001, "linear: weight of the pull towards 'no position'.", lo=0.0)
    swap_prob: float = prob(0.5, "linear: probability that a position is swapped between partners.")
    onion_linear_term: bool = field(
        default=True, metadata={"help": "onion: add the p * lambda magnitude term."}
    )
    onion_fixed_scale: bool = field(default=False, metadata={"help": "onion: gamma fixed at 1, no lambda."})
    probe_layers: int = bounded(1, "probe_mlp: layers.", lo=1)
    eval_seed: int = field(default=0, metadata={"help": "Seed of the corruptions during evaluation."})


@dataclass
class InterventionDataArguments(RepeatDataArguments):
    """Repeat data (as stage one), by default sequences of exactly `max_len` = 9 symbols."""

    min_len: int = bounded(9, "Shortest sequence.", lo=1)
    max_len: int = bounded(9, "Longest sequence (also the positions the intervention handles).", lo=1)


EVAL_SETS = ("valid", "valid_norepeat")


@register
class GruInterventionExperiment(Experiment):
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
            raise ConfigError(
                "n_symbols", cfg.data.n_symbols, f"{rc.n_symbols}, the trained model's alphabet"
            )

    def build_data(self) -> DatasetDict:
        return load_repeat_data(self.cfg, splits=("train", *EVAL_SETS))

    def build_model(self) -> RecurrentIntervention:
        m, d = self.cfg.model, self.cfg.data
        rnn = RecurrentSeq2Seq.from_pretrained(m.gru_model)
        torch.manual_seed(self.cfg.training.seed)
        model = RecurrentIntervention.around(
            rnn,
            m.intervention,
            d.max_len,
            mask_reg=m.mask_reg,
            swap_prob=m.swap_prob,
            onion_linear_term=m.onion_linear_term,
            onion_fixed_scale=m.onion_fixed_scale,
            probe_layers=m.probe_layers,
            eval_seed=m.eval_seed,
        )
        if self.cfg.run.init_checkpt:
            load_init_weights(model, self.cfg.run.init_checkpt)
        return model

    def build_trainer(self, model: RecurrentIntervention, data: DatasetDict) -> ExperimentTrainer:
        return build_recurrent_trainer(self.cfg, model, data)
