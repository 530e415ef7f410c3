"""Registers the arrows models with the Auto classes (called by `hf_experiments/__init__.py` once transformers is
imported; see there)."""

from __future__ import annotations

import transformers
from transformers import AutoConfig, AutoTokenizer

from hf_experiments.core.tokenization_char import CharTokenizer, CharTokenizerFast

from .configuration_gpt import GPTConfig
from .modeling_gpt import AUTO_CLASSES, GPTForCausalLM


def register() -> None:
    """Idempotent (``exist_ok=True``): re-imports, reloads and test collection never double-register.

    `register_for_auto_class` makes `save_pretrained` write `auto_map` and copy the configuration and modeling
    files beside the weights: the folder then loads with `trust_remote_code=True` where this package is not
    installed (and without it where it is: the registered classes win)."""
    AutoConfig.register(GPTConfig.model_type, GPTConfig, exist_ok=True)
    for auto_class in AUTO_CLASSES:
        getattr(transformers, auto_class).register(GPTConfig, GPTForCausalLM, exist_ok=True)
    GPTConfig.register_for_auto_class()
    GPTForCausalLM.register_for_auto_class(AUTO_CLASSES[0])
    AutoTokenizer.register(  # fast first, as AutoTokenizer prefers (use_fast=True)
        GPTConfig, slow_tokenizer_class=CharTokenizer, fast_tokenizer_class=CharTokenizerFast, exist_ok=True
    )
