"""Configuration of the modelscape MLP: sizes, nonlinearity and parameterisation (standard / NTK / muP).

The names follow the modelscape README (`WIDTH`, `DEPTH`, `GAMMA` become `width`, `depth`, `gamma`).
`depth` counts hidden layers (>= 1): `depth=2` is input layer -> hidden layer -> readout, as in the original.

Parameterisations (weights W of a layer with fan-in `n_in`, gain `g = init_gain`; biases start at zero):

=================  ====================================  ====================  ===============================
name               init                                  forward multiplier    learning rate (per layer)
=================  ====================================  ====================  ===============================
``standard``       W ~ N(0, g^2 / n_in)                  1                     lr
``ntk``            W ~ N(0, g^2)                         1 / sqrt(n_in)        lr
``mup``            hidden: N(0, g^2 / n_in);             readout: 1 / m        ``mup.MuSGD`` / ``mup.MuAdam``
                   readout: N(0, g^2 m / n_in) (or 0)    (``mup.MuReadout``)   (from the ``mup`` package)
=================  ====================================  ====================  ===============================

with the width multiplier ``m = width / mup_base_width``: at ``width == mup_base_width`` muP and standard
coincide, so a learning rate tuned there transfers to every width. Every parameterisation then divides the
output by ``gamma`` (the modelscape ``GAMMA``; the trainer rescales the learning rate by gamma^2 when
gamma < 1 and by gamma when gamma > 1). ``centering`` subtracts the output of a frozen copy of the initial
network, so the function starts at exactly zero.
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
