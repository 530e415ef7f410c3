"""Recurrent storage: an RNN that stores and repeats sequences, and interventions on its state (linear vs onion).
Importing the package registers the RNN and the intervention model with the Auto classes."""

from __future__ import annotations

from transformers import AutoConfig, AutoModel

from .configuration_intervention import InterventionConfig
from .configuration_recurrent import RecurrentConfig
from .modeling_intervention import RecurrentIntervention
from .modeling_recurrent import RecurrentOutput, RecurrentSeq2Seq, exact_match, token_loss


def _register() -> None:
    """Idempotent (`exist_ok=True`): re-imports and test collection never double-register.

    `register_for_auto_class` makes `save_pretrained` write `auto_map` and copy the configuration and modeling
    files beside the weights: the folder then loads with `trust_remote_code=True` where this package is not
    installed (and without it where it is: the registered classes win)."""
    for config_class, model_class in ((RecurrentConfig, RecurrentSeq2Seq), (InterventionConfig, RecurrentIntervention)):
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
        AutoModel.register(config_class, model_class, exist_ok=True)
        config_class.register_for_auto_class()
        model_class.register_for_auto_class("AutoModel")


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
