"""Context compression: trained vectors stand in for a context while a causal LM predicts what follows. Importing
the package registers the compression model with `AutoConfig`, `AutoModel` and `AutoModelForCausalLM`.

`register_for_auto_class` makes `save_pretrained` write `auto_map` and copy the configuration and modeling files
beside the weights: the folder then loads with `trust_remote_code=True` where this package is not installed (and
without it where it is: the registered classes win)."""

import transformers
from transformers import AutoConfig

from .configuration_compression import CompressionConfig
from .modeling_compression import AUTO_CLASSES, CompressionModel, CompressionOutput, resolve_cmp_layer


def _register() -> None:
    """Idempotent (``exist_ok=True``): re-imports and test collection never double-register."""
    AutoConfig.register(CompressionConfig.model_type, CompressionConfig, exist_ok=True)
    for auto_class in AUTO_CLASSES:
        getattr(transformers, auto_class).register(CompressionConfig, CompressionModel, exist_ok=True)
    CompressionConfig.register_for_auto_class()
    CompressionModel.register_for_auto_class(AUTO_CLASSES[0])


_register()

__all__ = ["CompressionConfig", "CompressionModel", "CompressionOutput", "resolve_cmp_layer"]
