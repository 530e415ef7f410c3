"""Recurrent storage: an RNN that stores and repeats sequences, and interventions on its state (linear vs onion).
Importing the package registers the RNN with the Auto classes."""

from __future__ import annotations

from transformers import AutoConfig, AutoModel

from .configuration_recurrent import RecurrentConfig
from .modeling_recurrent import RecurrentOutput, RecurrentSeq2Seq, exact_match, token_loss


def _register() -> None:
    """Idempotent (`exist_ok=True`): re-imports and test collection never double-register."""
    AutoConfig.register(RecurrentConfig.model_type, RecurrentConfig, exist_ok=True)
    AutoModel.register(RecurrentConfig, RecurrentSeq2Seq, exist_ok=True)


_register()

__all__ = ["RecurrentConfig", "RecurrentOutput", "RecurrentSeq2Seq", "exact_match", "token_loss"]
