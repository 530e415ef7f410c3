"""Registers the mlp models with the Auto classes (called by `hf_experiments/__init__.py` once transformers is
imported; see there)."""

from __future__ import annotations

from transformers import AutoConfig, AutoModel

from .configuration_mlp import MLPConfig
from .configuration_module import ModuleConfig
from .modeling_mlp import MLP
from .modeling_module import ModuleModel


def register() -> None:
    """Idempotent (``exist_ok=True``): re-imports and test collection never double-register.

    `register_for_auto_class` makes `save_pretrained` write `auto_map` and copy the configuration and modeling
    files beside the weights: the folder then loads with `trust_remote_code=True` where this package is not
    installed (and without it where it is: the registered classes win). A `ModuleModel` folder also needs the
    code of its `model_class`, which is not saved with it (see `modeling_module`)."""
    for config_class, model_class in ((MLPConfig, MLP), (ModuleConfig, ModuleModel)):
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
        AutoModel.register(config_class, model_class, exist_ok=True)
        config_class.register_for_auto_class()
        model_class.register_for_auto_class("AutoModel")
