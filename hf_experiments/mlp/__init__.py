"""modelscape: MLPs with standard / NTK / muP / mupify parameterisation (or any `nn.Module`) on batch functions,
loss-threshold stops and grabs, meant to be swept. Importing `hf_experiments` registers the models with the Auto
classes."""

from __future__ import annotations

import importlib
from typing import Any

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


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name], __name__), name)


__all__ = sorted(_LAZY)
