"""modelscape: MLPs with standard / NTK / muP / mupify parameterisation (or any `nn.Module`) on batch functions,
loss-threshold stops and grabs, meant to be swept. Importing the package registers the models with the Auto
classes."""

from transformers import AutoConfig, AutoModel

from .configuration_mlp import MLPConfig, gamma_lr
from .configuration_module import ModuleConfig
from .modeling_mlp import MLP, MLPNetwork, MLPOutput
from .modeling_module import ModuleModel


def _register() -> None:
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


_register()

__all__ = ["MLP", "MLPConfig", "MLPNetwork", "MLPOutput", "ModuleConfig", "ModuleModel", "gamma_lr"]
