"""The recurrent storage experiments' arguments: the RNN and the repeat data of stage one,
the intervention of stage two.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from hf_experiments.core.config import MAX_SEED, bounded, prob

from .repeat_data import RepeatDataSpec


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
            "help": "Decoder reads a constant 'no input' token instead of the previous symbol (teacher forcing)."
        },
    )


@dataclass
class RepeatDataArguments:
    """The repeat-sequence data (`hf_experiments.recurrent.repeat_data`)."""

    n_symbols: int = bounded(30, "Alphabet size.", lo=2)
    min_len: int = bounded(9, "Shortest sequence.", lo=1)
    max_len: int = bounded(9, "Longest sequence (validation adds max_len+1 and max_len+2).", lo=1)
    with_repeats: bool = field(default=True, metadata={"help": "Sequences may repeat a symbol."})
    n_train: int = bounded(1_000_000, "Training sequences (unique).", lo=1)
    n_valid: int = bounded(5000, "Sequences of the main validation set.", lo=1)
    n_valid_extra: int = bounded(1000, "Sequences of each extra validation set (longer / no repeats).", lo=0)
    heldout_fraction: float = prob(0.2, "Share of all sequences reserved for validation (never trained on).")
    generation_seed: int = bounded(0, "Seed of the generated data (not of training).", lo=0, hi=MAX_SEED)
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
    onion_linear_term: bool = field(default=True, metadata={"help": "onion: add the p * lambda magnitude term."})
    onion_fixed_scale: bool = field(default=False, metadata={"help": "onion: gamma fixed at 1, no lambda."})
    onion_linear_init: float = field(
        default=1.0,
        metadata={"help": "onion: initial lambda of the p * lambda term (1, as the original; 0 before this version)."},
    )
    probe_layers: int = bounded(1, "probe_mlp: layers.", lo=1)
    eval_seed: int = bounded(0, "Seed of the corruptions during evaluation.", lo=0, hi=MAX_SEED)


@dataclass
class InterventionDataArguments(RepeatDataArguments):
    """Repeat data (as stage one), by default sequences of exactly `max_len` = 9 symbols."""

    min_len: int = bounded(9, "Shortest sequence.", lo=1)
    max_len: int = bounded(9, "Longest sequence (also the positions the intervention handles).", lo=1)
