"""modelscape: MLPs with standard / NTK / muP / mupify parameterisation (or any `nn.Module`) on batch functions,
loss-threshold stops and grabs, meant to be swept. Importing the package registers the models with the Auto
classes."""

from transformers import AutoConfig, AutoModel

from .configuration_mlp import MLPConfig, gamma_lr
from .configuration_module import ModuleConfig
from .modeling_mlp import MLP, MLPNetwork, MLPOutput
from .modeling_module import ModuleModel

AutoConfig.register(MLPConfig.model_type, MLPConfig, exist_ok=True)
AutoModel.register(MLPConfig, MLP, exist_ok=True)
AutoConfig.register(ModuleConfig.model_type, ModuleConfig, exist_ok=True)
AutoModel.register(ModuleConfig, ModuleModel, exist_ok=True)

__all__ = ["MLP", "MLPConfig", "MLPNetwork", "MLPOutput", "ModuleConfig", "ModuleModel", "gamma_lr"]
