"""Configuration of the modelscape MLP (`MLPConfig`): sizes, nonlinearity and parameterisation (standard / NTK / muP).

The names follow JoeyTurn/modelscape (`WIDTH`, `DEPTH`, `GAMMA` become `width`, `depth`, `gamma`); `depth`
counts hidden layers. `mup` goes through the `mup` package and equals the standard parameterisation at
`mup_base_width`; `mupify` is the original's muP (dkarkada/mupify: per-layer multipliers, no base width);
every parameterisation divides the output by `gamma`, and `centering` subtracts the output of a frozen copy of
the initial network.

Design: `docs/sweeps_and_mlp.md`, section "Parameterisations".
"""

from __future__ import annotations

import math
from typing import Any

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

PARAMETERIZATIONS = ("standard", "ntk", "mup", "mupify")
MUPIFY_PARAMS = ("mup", "ntp", "mfp", "mup-lr", "ntp-lr")
INITS = ("pytorch", "normal")
NONLINEARITIES = ("relu", "tanh", "gelu", "silu", "identity")


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"MLPConfig: {name}={value!r} is invalid; expected an integer >= 1.")


@strict
class MLPConfig(PreTrainedConfig):
    """Config of `MLP`. Example: ``MLPConfig(d_in=10, width=256, depth=2, parameterization="mup")``."""

    model_type = "hfe_mlp"

    d_in: int = 1
    width: int = 8192
    depth: int = 2
    d_out: int = 1
    bias: bool = True
    nonlinearity: str = "relu"
    parameterization: str = "standard"
    gamma: float | int = 1.0
    centering: bool = False
    init: str = "pytorch"
    init_gain: float | int = 1.0
    mup_base_width: int = 64
    mupify_param: str = "mup"
    readout_zero_init: bool = False

    def __post_init__(self, **kwargs: Any) -> None:
        super().__post_init__(**kwargs)
        self.validate_mlp()

    def validate_mlp(self) -> None:
        """One clear line per bad value (runs at construction and again at save time)."""
        for name in ("d_in", "width", "depth", "d_out", "mup_base_width"):
            _positive_int(name, getattr(self, name))
        if self.nonlinearity not in NONLINEARITIES:
            raise ValueError(
                f"MLPConfig: nonlinearity={self.nonlinearity!r} is invalid; expected one of "
                f"{', '.join(NONLINEARITIES)}."
            )
        if self.parameterization not in PARAMETERIZATIONS:
            raise ValueError(
                f"MLPConfig: parameterization={self.parameterization!r} is invalid; expected one of "
                f"{', '.join(PARAMETERIZATIONS)}."
            )
        for name, allowed in (("init", INITS), ("mupify_param", MUPIFY_PARAMS)):
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"MLPConfig: {name}={getattr(self, name)!r} is invalid; expected one of {', '.join(allowed)}."
                )
        for name in ("gamma", "init_gain"):
            value = getattr(self, name)
            if isinstance(value, bool) or not value > 0:
                raise ValueError(f"MLPConfig: {name}={value!r} is invalid; expected a number > 0.")

    @property
    def width_mult(self) -> float:
        """muP width multiplier m = width / mup_base_width (1 for the other parameterisations)."""
        return self.width / self.mup_base_width if self.parameterization == "mup" else 1.0


def gamma_lr(lr: float, gamma: float) -> float:
    """The modelscape README's learning-rate rule for the output rescale 1/gamma: lr*gamma^2 (gamma<1), else
    lr*gamma. The original's code has it commented out (`gamma_lr_rule="none"`, our default)."""
    return lr * gamma**2 if gamma < 1 else lr * gamma


def mupify_param(layer_type: str, param: str, fan_in: int, width: int) -> tuple[float, float, float]:
    """dkarkada/mupify's rule for one layer: (forward multiplier g, learning-rate multiplier, init std).

    `layer_type` is readin / hidden / readout; the "activity" is sqrt(width) for mup, mfp and mup-lr, else 1;
    q = activity^2 / fan_in (readout: 1 / fan_in). In every case (activity * std)^2 = lr multiplier and
    (g * std * activity)^2 = q."""
    activity = math.sqrt(width) if param in ("mup", "mfp", "mup-lr") else 1.0
    q = 1.0 / fan_in if layer_type == "readout" else activity**2 / fan_in
    if param in ("mup-lr", "ntp-lr"):
        return 1.0, q, math.sqrt(q) / activity
    if param == "mup":
        return math.sqrt(q), 1.0, 1.0 / activity
    return math.sqrt(q) / activity, activity**2, 1.0  # ntp, mfp


__all__ = ["INITS", "MUPIFY_PARAMS", "NONLINEARITIES", "PARAMETERIZATIONS", "MLPConfig", "gamma_lr", "mupify_param"]
