"""Recurrent storage: an RNN that stores and repeats sequences, and interventions on its state (linear vs onion).
Importing `hf_experiments` registers the RNN and the intervention model with the Auto classes."""

from __future__ import annotations

from hf_experiments.core.lazy_names import lazy_getattr

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


__getattr__ = lazy_getattr(__name__, _LAZY)
__all__ = sorted(_LAZY)
