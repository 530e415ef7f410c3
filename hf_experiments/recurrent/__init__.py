"""Recurrent storage: an RNN that stores and repeats sequences, and interventions on its state (linear vs onion).
Importing `hf_experiments` registers the RNN and the intervention model with the Auto classes."""

from __future__ import annotations

import importlib
from typing import Any

# The package's names, imported on first use (PEP 562): its data modules (generators, loaders) then import
# without torch or transformers; `hf_experiments/__init__.py` registers the models with the Auto classes.
_LAZY = {
    "InterventionConfig": ".configuration_intervention",
    "RecurrentConfig": ".configuration_recurrent",
    "RecurrentIntervention": ".modeling_intervention",
    "RecurrentOutput": ".modeling_recurrent",
    "RecurrentSeq2Seq": ".modeling_recurrent",
    "exact_match": ".modeling_recurrent",
    "token_loss": ".modeling_recurrent",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name], __name__), name)


__all__ = sorted(_LAZY)
