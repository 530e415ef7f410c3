"""Recurrent storage: an RNN that stores and repeats sequences, and interventions on its state (linear vs onion).
Importing the package registers the RNN and the intervention model with the Auto classes."""

from __future__ import annotations

from transformers import AutoConfig, AutoModel

from .configuration_intervention import InterventionConfig
from .configuration_recurrent import RecurrentConfig
from .modeling_intervention import RecurrentIntervention
from .modeling_recurrent import RecurrentOutput, RecurrentSeq2Seq, exact_match, token_loss


def _register() -> None:
    """Idempotent (`exist_ok=True`): re-imports and test collection never double-register."""
    AutoConfig.register(RecurrentConfig.model_type, RecurrentConfig, exist_ok=True)
    AutoModel.register(RecurrentConfig, RecurrentSeq2Seq, exist_ok=True)
    AutoConfig.register(InterventionConfig.model_type, InterventionConfig, exist_ok=True)
    AutoModel.register(InterventionConfig, RecurrentIntervention, exist_ok=True)


_register()

__all__ = [
    "InterventionConfig",
    "RecurrentConfig",
    "RecurrentIntervention",
    "RecurrentOutput",
    "RecurrentSeq2Seq",
    "exact_match",
    "token_loss",
]
