"""Context compression: trained vectors stand in for a context while a causal LM predicts what follows. Importing
the package registers the compression model with `AutoConfig` and `AutoModel`."""

from transformers import AutoConfig, AutoModel

from .configuration_compression import CompressionConfig
from .modeling_compression import CompressionModel, CompressionOutput, resolve_cmp_layer

AutoConfig.register(CompressionConfig.model_type, CompressionConfig, exist_ok=True)
AutoModel.register(CompressionConfig, CompressionModel, exist_ok=True)

__all__ = ["CompressionConfig", "CompressionModel", "CompressionOutput", "resolve_cmp_layer"]
