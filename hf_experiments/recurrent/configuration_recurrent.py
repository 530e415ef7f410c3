"""Configuration of the sequence-to-sequence RNN of the recurrent storage experiments.

As in RobertCsordas/onion_representations (arXiv 2408.10920).
"""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

CELLS = ("gru", "lstm")


@strict
class RecurrentConfig(PreTrainedConfig):
    r"""
    One RNN that reads a sequence into its final state and then, started from that state, writes it back.

    Parameters (seed names):
        n_symbols (`int`, defaults to 30): symbols 0..n_symbols-1; the embedding adds SOS (`n_symbols`) and
        the
            constant "no input" token (`n_symbols + 1`).
        state_size (`int`, defaults to 128): hidden size of the RNN (the paper's grid: 48 ... 1024).
        embedding_size (`int | None`): input embedding size; None = `state_size`.
        cell (`"gru" | "lstm"`): the recurrent cell. An LSTM's state is `[h; c]`, so its flat state is twice
        as big.
        n_layers (`int`, defaults to 1): stacked RNN layers; the flat state concatenates every layer.
        no_input (`bool`): the decoder reads the constant "no input" token at every step instead of the
        previous
            target (teacher forcing after SOS otherwise).

    Example: `RecurrentConfig(n_symbols=30, state_size=128)`.
    """

    model_type = "hfe_recurrent"

    n_symbols: int = 30
    state_size: int = 128
    embedding_size: int | None = None
    cell: str = "gru"
    n_layers: int = 1
    no_input: bool = False

    def __post_init__(self, **kwargs):
        for name in ("n_symbols", "state_size", "n_layers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"RecurrentConfig: {name}={value!r} is invalid; expected an integer >= 1")
        if self.embedding_size is not None and self.embedding_size < 1:
            raise ValueError(
                f"RecurrentConfig: embedding_size={self.embedding_size!r} is invalid; expected an integer >= 1 or None"
            )
        if self.cell not in CELLS:
            raise ValueError(f"RecurrentConfig: cell={self.cell!r} is invalid; expected one of {CELLS}")
        super().__post_init__(**kwargs)

    @property
    def sos_token_id(self) -> int:
        return self.n_symbols

    @property
    def no_input_token_id(self) -> int:
        return self.n_symbols + 1

    @property
    def flat_state_size(self) -> int:
        """Size of the vector `encode` returns: every layer's h (and c for an LSTM)."""
        return self.state_size * self.n_layers * (2 if self.cell == "lstm" else 1)
