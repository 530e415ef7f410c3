"""The loss and optimizer a config names (the original's `loss` / `optimizer` strings, resolved against
`torch.nn` / `torch.optim`, or an import path), and the JSON keyword-argument objects they take.

Why not only `TrainingArguments.optim`: modelscape users name torch classes (`"Adam"`, `"SGD"`, their own
optimizer), which the Trainer's optimizer names do not cover; `optim` stays for everything the Trainer offers.
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from hf_experiments.core.config import ConfigError
from hf_experiments.core.imports import check_object, import_object


def json_object(key: str, raw: dict | str | None) -> dict[str, Any]:
    """A config's keyword-argument object (a dict, or its JSON text) -> dict; ConfigError otherwise."""
    if raw is None:
        return {}
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as e:
            raise ConfigError(key, raw, f"a JSON object ({e.msg})") from None
    if not isinstance(raw, dict):
        raise ConfigError(key, raw, "a JSON object of keyword arguments")
    return raw


# The torch classes a name may pick: losses (not any nn.Module), optimizers (not the abstract base).
LOSS_BASE = nn.modules.loss._Loss


def _torch_class(spec: str, module: Any, base: type) -> type | None:
    obj = getattr(module, spec, None)
    return obj if inspect.isclass(obj) and issubclass(obj, base) and obj is not torch.optim.Optimizer else None


def _names(module: Any, base: type) -> list[str]:
    return sorted(n for n in dir(module) if _torch_class(n, module, base) is not None and not n.startswith("_"))


def check_spec(key: str, spec: str, module: Any, base: type, kwargs: dict[str, Any] | None = None) -> None:
    """Validation: `spec` is a class of `module` (torch.nn losses / torch.optim optimizers) that takes `kwargs`,
    or an import path that exists (read, not run). ConfigError naming what is allowed."""
    cls = _torch_class(spec, module, base)
    if cls is not None:
        try:
            inspect.signature(cls).bind_partial(
                *(["params"] if base is torch.optim.Optimizer else []), **(kwargs or {})
            )
        except TypeError as e:
            names = [n for n in inspect.signature(cls).parameters if n not in ("self", "params")]
            raise ConfigError(f"{key}_kwargs", kwargs, f"keywords {spec} takes ({', '.join(names)}): {e}") from None
        return
    if ":" not in spec and "." not in spec:
        import difflib

        names = _names(module, base)
        close = difflib.get_close_matches(spec, names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        kind = f"{module.__name__} {'loss ' if base is LOSS_BASE else ''}class name"
        raise ConfigError(key, spec, f"a {kind} ({', '.join(names[:6])}, ...) or an import path{hint}")
    try:
        check_object(spec, key)
    except ValueError as e:
        raise ConfigError(key, spec, str(e)) from None


def resolve_loss(spec: str, kwargs: dict[str, Any]) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """A torch.nn loss class name or an import path (a class, built with `kwargs`, or a function of
    (predictions, labels), given `kwargs` as keywords) -> loss(predictions, labels)."""
    obj = _torch_class(spec, nn, LOSS_BASE) or import_object(spec, "loss")
    if inspect.isclass(obj):
        return obj(**kwargs)
    return functools.partial(obj, **kwargs) if kwargs else obj


def apply_loss(loss_fn: Callable[..., torch.Tensor], predictions: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """loss_fn(predictions, labels) with a trailing size-1 dimension dropped from both, as the original's
    ``loss_fn(out.squeeze(), y.squeeze())`` (but never the batch dimension); float labels take the predictions'
    dtype, integer labels (class indices) stay integers."""
    if predictions.dim() > 1 and predictions.shape[-1] == 1:
        predictions = predictions.squeeze(-1)
    if labels.dim() > 1 and labels.shape[-1] == 1:
        labels = labels.squeeze(-1)
    if labels.is_floating_point():
        labels = labels.to(predictions.dtype)
    return loss_fn(predictions, labels)


def resolve_optimizer(spec: str) -> type:
    """A torch.optim class name or an import path to an optimizer class."""
    return _torch_class(spec, torch.optim, torch.optim.Optimizer) or import_object(spec, "optimizer")


__all__ = ["apply_loss", "check_spec", "json_object", "resolve_loss", "resolve_optimizer"]
