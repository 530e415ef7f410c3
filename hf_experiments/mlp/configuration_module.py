"""Configuration of `ModuleModel` (any `nn.Module` trained by the MLP experiment): the import path of its class
or factory and the constructor arguments it was built with, so a saved folder rebuilds it.

Loading such a folder imports `model_class` (an installed module or a ``file.py``), i.e. runs that code, as
`trust_remote_code` would; a ``live:`` name (a class defined in a notebook) loads only where it is defined.
"""

from __future__ import annotations

from typing import Any

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig


@strict
class ModuleConfig(PreTrainedConfig):
    """Config of `ModuleModel`. Example: ``ModuleConfig(model_class="my_pkg.nets:ResNet", model_args={"width": 8})``."""

    model_type = "hfe_module"

    model_class: str = ""
    model_args: dict | None = None
    gamma: float | int = 1.0
    centering: bool = False

    def __post_init__(self, **kwargs: Any) -> None:
        super().__post_init__(**kwargs)
        if self.model_args is None:
            self.model_args = {}
        if isinstance(self.gamma, bool) or not self.gamma > 0:
            raise ValueError(f"ModuleConfig: gamma={self.gamma!r} is invalid; expected a number > 0.")


__all__ = ["ModuleConfig"]
