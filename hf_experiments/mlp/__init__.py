"""modelscape: MLPs with standard / NTK / muP parameterisation on batch functions, loss-threshold stops and grabs,
meant to be swept. Importing the package registers the MLP with the Auto classes."""

from transformers import AutoConfig, AutoModel

from .configuration_mlp import MLPConfig, gamma_lr
from .modeling_mlp import MLP, MLPNetwork, MLPOutput

AutoConfig.register(MLPConfig.model_type, MLPConfig, exist_ok=True)
AutoModel.register(MLPConfig, MLP, exist_ok=True)

__all__ = ["MLP", "MLPConfig", "MLPNetwork", "MLPOutput", "gamma_lr"]
