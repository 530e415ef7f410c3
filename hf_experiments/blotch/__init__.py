"""Semantic blotching: step-by-step arithmetic with blotched (dropped) solution steps, and training that rewrites
its own data (`self_training/`). Importing the package registers the blotch model with the Auto classes."""

from __future__ import annotations

from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from hf_experiments.core.tokenization_char import CharTokenizer

from .configuration_blotch import POSENC_TYPES, BlotchConfig
from .modeling_blotch import BlotchModel, BlotchPositionalEncoding, causal_lm_loss


def _register() -> None:
    """Idempotent (``exist_ok=True``): re-imports and test collection never double-register."""
    AutoConfig.register(BlotchConfig.model_type, BlotchConfig, exist_ok=True)
    AutoModelForCausalLM.register(BlotchConfig, BlotchModel, exist_ok=True)
    AutoTokenizer.register(BlotchConfig, tokenizer_class=CharTokenizer, exist_ok=True)


_register()

__all__ = ["POSENC_TYPES", "BlotchConfig", "BlotchModel", "BlotchPositionalEncoding", "causal_lm_loss"]
