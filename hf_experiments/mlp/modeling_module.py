"""`ModuleModel`: any `nn.Module` (a CNN, a ResNet, the user's own network, another `PreTrainedModel`) as a
`PreTrainedModel`, so the Trainer, checkpoints, `save_pretrained` / `from_pretrained` and the grabs treat it like
the built-in MLP.

The network keeps its own initialisation (`_init_weights` does nothing): the original builds `MODEL_CLASS`
with its constructor and trains it as it is. Output rescale by `gamma` and centering (output minus the
output of a frozen copy of the initial network) are the MLP's; muP / NTK are not applied (they need the
layer anatomy of the built-in MLP).

A saved folder holds this wrapper's code (custom code, `trust_remote_code`), not the network's: it loads where
`model_class` can be imported (an installed module, or the recorded ``file.py`` path) and fails with a message
saying so elsewhere; a ``live:`` class loads only in a process that defines it.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedConfig, PreTrainedModel
from transformers.utils import ModelOutput

from .configuration_module import ModuleConfig
from .modeling_mlp import FrozenInitCopy, MLPOutput, _as_buffers, mse_output

# Values the wrapper applies itself: a `PreTrainedModel` factory's config must not apply them a second time.
WRAPPER_KEYS = ("gamma", "centering", "parameterization", "init", "init_gain")


def is_pretrained_class(factory: Any) -> bool:
    return inspect.isclass(factory) and issubclass(factory, PreTrainedModel)


def constructor_args(factory: Any, offered: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments `factory` is built with: the `offered` values its signature names (as the original's
    `_extract_kwargs_for`), and every entry of `extra` (model_kwargs) if it also takes ``**kwargs``. For a
    `PreTrainedModel` class these are the arguments of its config class (its own fields, not the generic
    `PreTrainedConfig` ones, and none of `WRAPPER_KEYS` unless `extra` names them)."""
    base: set[str] = set()
    if is_pretrained_class(factory):
        factory = factory.config_class
        base = set(inspect.signature(PreTrainedConfig.__init__).parameters) | set(WRAPPER_KEYS)
    target = factory.__init__ if inspect.isclass(factory) else factory
    params = inspect.signature(target).parameters
    named = {
        n
        for n, p in params.items()
        if n != "self"
        and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        and (n not in base or n in extra)
    }
    args = {k: v for k, v in offered.items() if k in named}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        args.update(extra)
    return args


# Why a saved `ModuleModel` folder may not load elsewhere: only this wrapper's code is saved beside the weights.
NOT_SAVED = (
    "the network's code is not saved with the model: make that module importable (or that file present) where "
    "the folder is loaded"
)

# ``live:`` factories (defined in a notebook) this process has built a model from; filled by the experiment.
LIVE_FACTORIES: dict[str, Any] = {}


def resolve_factory(spec: str) -> Any:
    """``package.module:Name``, ``/path/file.py:Name`` or a ``live:`` name of this process -> the object.

    Written here rather than imported from `core.imports`: model code imports only torch, transformers and
    its siblings, so a saved folder's code stays loadable on its own."""
    if spec.startswith("live:"):
        live = LIVE_FACTORIES
        name = spec[len("live:") :].partition("#")[0]
        main = sys.modules.get("__main__")
        if spec not in live and name.startswith("__main__.") and hasattr(main, name[len("__main__.") :]):
            return getattr(main, name[len("__main__.") :])  # defined again (same name) in this notebook or script
        if spec not in live:
            raise ValueError(
                f"model_class={spec!r} was defined in a notebook or script of another process; define it again "
                "(same name) before loading, or save it in an importable .py file"
            )
        return live[spec]
    module_name, sep, attr = spec.rpartition(":")
    if not sep:
        module_name, _, attr = spec.rpartition(".")
    if not module_name or not attr:
        raise ValueError(f"model_class={spec!r} is invalid; expected 'package.module:Name' or 'file.py:Name'")
    if module_name.endswith(".py"):
        mod_spec = importlib.util.spec_from_file_location(f"_hfe_model_{Path(module_name).stem}", module_name)
        if mod_spec is None or not Path(module_name).is_file():
            raise ValueError(f"model_class={spec!r}: no file {module_name}; {NOT_SAVED}")
        module = importlib.util.module_from_spec(mod_spec)
        mod_spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            raise ValueError(f"model_class={spec!r}: cannot import {module_name!r} ({e}); {NOT_SAVED}") from None
    if not hasattr(module, attr):
        raise ValueError(f"model_class={spec!r}: {module_name} defines no {attr!r}")
    return getattr(module, attr)


def build_network(factory: Any, model_args: Mapping[str, Any]) -> nn.Module:
    """`factory(**model_args)`; a `PreTrainedModel` class is built from its config class instead."""
    if is_pretrained_class(factory):
        return factory(factory.config_class(**model_args))
    return factory(**model_args)


def _predictions(out: Any) -> torch.Tensor:
    """A network's output -> its prediction tensor (a tensor, the first of a tuple, `logits`, `predictions`,
    or the first tensor of another `ModelOutput`)."""
    if isinstance(out, torch.Tensor):
        return out
    for name in ("logits", "predictions"):
        if isinstance(getattr(out, name, None), torch.Tensor):
            return getattr(out, name)
    if isinstance(out, ModelOutput):
        out = out.to_tuple()
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise TypeError(f"model_class returned {type(out).__name__}; expected a tensor of predictions")


class ModuleModel(FrozenInitCopy, PreTrainedModel):
    """f(x) = net(x) / gamma, optionally centred, where `net = model_class(**model_args)`."""

    config: ModuleConfig
    config_class = ModuleConfig
    base_model_prefix = "net"
    main_input_name = "x"
    accepts_loss_kwargs = False

    def __init__(self, config: ModuleConfig) -> None:
        super().__init__(config)
        factory = resolve_factory(config.model_class)
        net = build_network(factory, config.model_args)
        if not isinstance(net, nn.Module):
            raise TypeError(f"model_class={config.model_class!r} built a {type(net).__name__}; expected an nn.Module")
        self.net = net
        self.net_init = _as_buffers(copy.deepcopy(net)) if config.centering else None
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        """The network's own constructor initialised it (see the module docstring)."""

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> MLPOutput:
        out = _predictions(self.net(x))
        if self.net_init is not None:
            with torch.no_grad():
                baseline = _predictions(self.net_init(x))  # frozen
            out = out - baseline
        return mse_output(out / self.config.gamma, labels, f"model_class={self.config.model_class}", squeeze=True)


__all__ = ["WRAPPER_KEYS", "ModuleModel", "build_network", "constructor_args", "resolve_factory"]
