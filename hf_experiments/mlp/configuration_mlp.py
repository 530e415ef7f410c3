"""Configuration of the modelscape MLP (`MLPConfig`): sizes, nonlinearity and parameterisation (standard / NTK / muP).

The names follow JoeyTurn/modelscape (`WIDTH`, `DEPTH`, `GAMMA` become `width`, `depth`, `gamma`); `depth`
counts hidden layers. muP goes through the `mup` package and equals the standard parameterisation at
`mup_base_width`; every parameterisation divides the output by `gamma` (:func:`gamma_lr` rescales the learning
rate to match), and `centering` subtracts the output of a frozen copy of the initial network.

Design: `docs/sweeps_and_mlp.md`, section "Parameterisations".
"""

from __future__ import annotations

from typing import Any

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

PARAMETERIZATIONS = ("standard", "ntk", "mup")
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
    init_gain: float | int = 1.0
    mup_base_width: int = 64
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
        for name in ("gamma", "init_gain"):
            value = getattr(self, name)
            if isinstance(value, bool) or not value > 0:
                raise ValueError(f"MLPConfig: {name}={value!r} is invalid; expected a number > 0.")

    @property
    def width_mult(self) -> float:
        """muP width multiplier m = width / mup_base_width (1 for the other parameterisations)."""
        return self.width / self.mup_base_width if self.parameterization == "mup" else 1.0


def gamma_lr(lr: float, gamma: float) -> float:
    """modelscape's learning-rate rule for the output rescale 1/gamma: lr*gamma^2 (gamma<1), else lr*gamma."""
    return lr * gamma**2 if gamma < 1 else lr * gamma


__all__ = ["NONLINEARITIES", "PARAMETERIZATIONS", "MLPConfig", "gamma_lr"]
