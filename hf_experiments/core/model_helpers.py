"""Model helpers every experiment shares: a model config built from the argument dataclasses (each
hyperparameter written once, its check done once, by the config), the check that a model fits this machine and
that `init_checkpt` fits the model (both before anything is written), and loading weights only (`init_checkpt`)
into a freshly built model."""

from __future__ import annotations

import ast
import dataclasses
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformers import PreTrainedModel
from transformers.utils import logging

from .config import ConfigError

if TYPE_CHECKING:
    import torch

logger = logging.get_logger(__name__)


def load_init_weights(model: PreTrainedModel, path: str) -> list[str]:
    """`init_checkpt`: copy weights (only) from a checkpoint or saved-model folder into `model`; returns the
    names of the tensors the folder did not have (kept at initialisation)."""
    from transformers.trainer_utils import load_sharded_checkpoint

    path = Path(path)
    if (path / "model.safetensors").is_file():
        from safetensors.torch import load_file

        state = load_file(str(path / "model.safetensors"))
        missing, unexpected = model.load_state_dict(state, strict=False)
    else:
        missing, unexpected = load_sharded_checkpoint(model, str(path), strict=False)
    if unexpected:
        raise ValueError(f"init_checkpt={str(path)!r}: weights do not fit this model (unexpected: {unexpected[:5]})")
    logger.warning(f"init_checkpt: loaded weights from {path} ({len(missing)} tensors kept at initialisation)")
    return list(missing)


# A model config's own check fails with "<Config>: <key>=<value!r> is invalid; expected <allowed>." (the one format
# the configs of this package use); that line becomes the run's config error.
_CONFIG_ERROR = re.compile(r"^\w+: (?P<key>\w+)=(?P<value>.*?) is invalid; expected (?P<allowed>.*?)\.?$", re.S)


def model_config(config_cls: type, *arguments: Any, drop: tuple[str, ...] = (), **values: Any) -> Any:
    """`config_cls(**fields of the argument dataclasses, **values)`: each hyperparameter is written once, in its
    argument dataclass, and checked once, by the model config (at `validate` time already, so a bad value stops
    the run before anything is written). `drop` names argument fields the config does not take; `values` are
    the derived ones (vocabulary size, special token ids, ...) and win over fields of the same name."""
    kwargs: dict[str, Any] = {}
    for args in arguments:
        kwargs.update({f.name: getattr(args, f.name) for f in dataclasses.fields(args) if f.name not in drop})
    kwargs.update(values)
    if dataclasses.is_dataclass(config_cls):  # transformers configs accept any keyword silently: name them
        known = {f.name for f in dataclasses.fields(config_cls)} | set(getattr(config_cls, "attribute_map", {}))
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise TypeError(
                f"{config_cls.__name__} has no field {unknown}: drop it from the arguments or add it to the config"
            )
    try:
        return config_cls(**kwargs)
    except ValueError as e:
        match = _CONFIG_ERROR.match(str(e))
        if match is None:
            raise ConfigError("model", config_cls.__name__, " ".join(str(e).split())) from None
        try:
            value = ast.literal_eval(match["value"])
        except (ValueError, SyntaxError):
            value = match["value"]
        raise ConfigError(match["key"], value, match["allowed"]) from None


def available_memory() -> int:
    """Bytes a model could use: the GPU's free memory when one is used, else the machine's available RAM."""
    import torch

    if torch.cuda.is_available():
        return int(torch.cuda.mem_get_info()[0])
    import psutil

    return int(psutil.virtual_memory().available)


def check_trainable(model_cls: type, config: Any, init_checkpt: str | None = None) -> None:
    """Before anything is written: the model fits this machine for training (built on the meta device, so no
    memory is taken), and `init_checkpt` holds weights that fit it. Raises `ConfigError`."""
    import torch

    with torch.device("meta"):
        model = model_cls(config)
    n_params = sum(p.numel() for p in model.parameters())
    need = 16 * n_params  # float32 weights, gradients and two Adam moments
    have = available_memory()
    if need > have:
        raise ConfigError(
            "model",
            f"{n_params:,} parameters",
            f"about {need / 2**30:.1f} GiB to train (weights, "
            f"gradients, Adam moments); this machine has {have / 2**30:.1f} GiB available",
        )
    if init_checkpt:
        check_init_weights(model, init_checkpt)


def check_init_weights(model: torch.nn.Module, path: str) -> None:
    """`init_checkpt` holds safetensors weights whose names and shapes fit `model` (read from the file headers)."""
    from safetensors import safe_open

    folder = Path(path)
    index = folder / "model.safetensors.index.json"
    files = (
        sorted({folder / f for f in json.loads(index.read_text())["weight_map"].values()})
        if index.is_file()
        else [folder / "model.safetensors"]
        if (folder / "model.safetensors").is_file()
        else []
    )
    if not files:
        if (folder / "pytorch_model.bin").is_file():
            return  # legacy pickles: checked when loaded
        raise ConfigError(
            "init_checkpt", path, "a checkpoint or saved-model folder with model weights (model.safetensors)"
        )
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    for file in files:
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():
                shape = tuple(f.get_slice(key).get_shape())
                if key not in expected:
                    raise ConfigError(
                        "init_checkpt", path, f"weights of this model; it has {key!r}, which this model does not"
                    )
                if shape != expected[key]:
                    raise ConfigError(
                        "init_checkpt",
                        path,
                        f"weights of this model's shapes; {key} has shape {shape}, the model {expected[key]}",
                    )
