"""modelscape MLP (SPEC §4): config and model; importing this registers them with the Auto classes."""

from transformers import AutoConfig, AutoModel

from .configuration_mlp import MLPConfig, gamma_lr
from .modeling_mlp import MLP, MLPNetwork, MLPOutput

AutoConfig.register(MLPConfig.model_type, MLPConfig, exist_ok=True)
AutoModel.register(MLPConfig, MLP, exist_ok=True)

__all__ = ["MLP", "MLPConfig", "MLPNetwork", "MLPOutput", "gamma_lr"]
