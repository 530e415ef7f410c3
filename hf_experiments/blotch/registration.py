"""Registers the blotch models with the Auto classes (called by `hf_experiments/__init__.py` once transformers is
imported; see there)."""

from __future__ import annotations

import transformers
from transformers import AutoConfig, AutoTokenizer

from hf_experiments.core.tokenization_char import CharTokenizer, CharTokenizerFast

from .configuration_blotch import BlotchConfig
from .modeling_blotch import AUTO_CLASSES, BlotchModel


def register() -> None:
    """Idempotent (``exist_ok=True``): re-imports and test collection never double-register.

    `register_for_auto_class` makes `save_pretrained` write `auto_map` and copy the configuration and modeling
    files beside the weights: the folder then loads with `trust_remote_code=True` where this package is not
    installed (and without it where it is: the registered classes win)."""
    AutoConfig.register(BlotchConfig.model_type, BlotchConfig, exist_ok=True)
    for auto_class in AUTO_CLASSES:
        getattr(transformers, auto_class).register(BlotchConfig, BlotchModel, exist_ok=True)
    BlotchConfig.register_for_auto_class()
    BlotchModel.register_for_auto_class(AUTO_CLASSES[0])
    AutoTokenizer.register(  # fast first, as AutoTokenizer prefers (use_fast=True)
        BlotchConfig, slow_tokenizer_class=CharTokenizer, fast_tokenizer_class=CharTokenizerFast, exist_ok=True
    )
