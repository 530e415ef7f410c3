"""Registers the compression models with the Auto classes (called by `hf_experiments/__init__.py` once transformers is
imported; see there)."""

from __future__ import annotations

import transformers
from transformers import AutoConfig

from .configuration_compression import CompressionConfig
from .modeling_compression import AUTO_CLASSES, CompressionModel


def register() -> None:
    """Idempotent (``exist_ok=True``): re-imports and test collection never double-register."""
    AutoConfig.register(CompressionConfig.model_type, CompressionConfig, exist_ok=True)
    for auto_class in AUTO_CLASSES:
        getattr(transformers, auto_class).register(CompressionConfig, CompressionModel, exist_ok=True)
    CompressionConfig.register_for_auto_class()
    CompressionModel.register_for_auto_class(AUTO_CLASSES[0])
