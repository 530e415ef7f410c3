"""modelscape: MLPs with standard / NTK / muP / mupify parameterisation (or any `nn.Module`) on batch functions,
loss-threshold stops and grabs, meant to be swept. Importing `hf_experiments` registers the models with the Auto
classes."""

from __future__ import annotations

from hf_experiments.core.lazy_names import lazy_getattr

# The package's names, imported on first use (PEP 562): its data modules (generators, loaders) then import
# without torch or transformers; `hf_experiments/__init__.py` registers the models with the Auto classes.
_LAZY = {
    "MLP": ".modeling_mlp",
    "MLPConfig": ".configuration_mlp",
    "MLPNetwork": ".modeling_mlp",
    "MLPOutput": ".modeling_mlp",
    "ModuleConfig": ".configuration_module",
    "ModuleModel": ".modeling_module",
    "gamma_lr": ".configuration_mlp",
}


__getattr__ = lazy_getattr(__name__, _LAZY)
__all__ = sorted(_LAZY)
