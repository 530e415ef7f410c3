"""The modelscape MLP as a `PreTrainedModel`: standard, NTK and muP parameterisations, output rescale,
centering.

Why the `mup` package for muP: the per-layer learning rates of muP depend on the optimiser (SGD-like and
Adam-like optimisers scale differently); `mup.MuSGD` / `mup.MuAdam` implement both from the parameters'
`infshape`, which `mup.set_base_shapes` attaches. We use its `MuReadout` (the 1/m output multiplier) and
its optimisers, and set the shapes with ``rescale_params=False`` because `_init_weights` below already draws
the muP initialisation directly (so a model built twice, or loaded with `from_pretrained`, is never rescaled
twice). The readout's width multiplier comes from the config rather than from the parameters' `infshape`,
so the forward pass never depends on an attribute that `from_pretrained` may not carry over.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .configuration_mlp import MLPConfig, mupify_param

try:  # optional (`pip install hf-experiments[mup]`): only parameterization="mup" needs it
    from mup import MuReadout
except ImportError:  # pragma: no cover - exercised only without the extra
    MuReadout = None

MUP_MISSING = "parameterization='mup' needs the mup package: pip install mup (or 'hf-experiments[mup]')"

_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "silu": nn.SiLU, "identity": nn.Identity}


class ScaledLinear(nn.Linear):
    """`nn.Linear` with a constant multiplier on the weight product (NTK: 1/sqrt(fan_in)); bias unscaled."""

    def __init__(self, in_features: int, out_features: int, bias: bool, multiplier: float) -> None:
        super().__init__(in_features, out_features, bias)
        self.multiplier = multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, self.weight) * self.multiplier
        return out + self.bias if self.bias is not None else out


class MupifyLinear(nn.Linear):
    """A layer as dkarkada/mupify leaves it: output = g * (W x + b) (the multiplier covers the bias too), and
    `lr_multiplier` for the optimizer (read by `mlp_trainer.build_optimizer`)."""

    def __init__(self, in_features: int, out_features: int, bias: bool, layer_type: str, param: str, width: int):
        super().__init__(in_features, out_features, bias)
        self.multiplier, self.lr_multiplier, self.init_std = mupify_param(layer_type, param, in_features, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.multiplier * F.linear(x, self.weight, self.bias)


class _Scaled(nn.Module):
    """An activation times a constant (mupify multiplies every ReLU by sqrt(2))."""

    def __init__(self, act: nn.Module, factor: float) -> None:
        super().__init__()
        self.act, self.factor = act, factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.factor * self.act(x)


class Readout(MuReadout or nn.Linear):
    """`mup.MuReadout` (output = W (x / m) + b), m fixed at construction instead of read from `infshape`."""

    def __init__(self, in_features: int, out_features: int, bias: bool, width_mult: float) -> None:
        if MuReadout is None:
            raise ImportError(MUP_MISSING)
        self._width_mult = width_mult
        super().__init__(in_features, out_features, bias=bias)

    def width_mult(self) -> float:
        return self._width_mult

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x / self._width_mult, self.weight, self.bias)


class MLPNetwork(nn.Module):
    """input_layer -> act -> (hidden_layers -> act)* -> output_layer; the names follow modelscape's MLP."""

    def __init__(self, config: MLPConfig, width: int | None = None) -> None:
        super().__init__()
        width = config.width if width is None else width
        param, bias = config.parameterization, config.bias

        def linear(n_in: int, n_out: int, kind: str) -> nn.Linear:
            readout = kind == "readout"
            if param == "mupify":
                layer = MupifyLinear(n_in, n_out, bias, kind, config.mupify_param, width)
            elif param == "ntk":
                layer = ScaledLinear(n_in, n_out, bias, 1.0 / math.sqrt(n_in))
            elif param == "mup" and readout:
                layer = Readout(n_in, n_out, bias, width / config.mup_base_width)
            else:
                layer = nn.Linear(n_in, n_out, bias)
            layer._hfe_readout = readout  # which init rule `MLP._init_weights` applies
            return layer

        self.input_layer = linear(config.d_in, width, "readin")
        self.hidden_layers = nn.ModuleList([linear(width, width, "hidden") for _ in range(config.depth - 1)])
        self.output_layer = linear(width, config.d_out, "readout")
        self.act = _ACTIVATIONS[config.nonlinearity]()
        if param == "mupify" and config.nonlinearity == "relu":
            self.act = _Scaled(self.act, math.sqrt(2.0))

    def forward(self, x: torch.Tensor, return_hidden: bool = False):
        h = self.act(self.input_layer(x))  # (B, width)
        hidden = [h]
        for layer in self.hidden_layers:
            h = self.act(layer(h))
            hidden.append(h)
        out = self.output_layer(h)  # (B, d_out)
        return (out, hidden) if return_hidden else out


def _as_buffers(module: nn.Module) -> nn.Module:
    """Turn every parameter of `module` into a (persistent) buffer of the same name: frozen for good."""
    for sub in module.modules():
        for name, param in list(sub.named_parameters(recurse=False)):
            del sub._parameters[name]
            sub.register_buffer(name, param.detach())
    return module


@dataclass
class MLPOutput(ModelOutput):
    """`loss`: mean squared error against `labels` (when given); `predictions`: (B, d_out), or (B,) if the
    labels are one-dimensional and d_out == 1."""

    loss: torch.FloatTensor | None = None
    predictions: torch.FloatTensor | None = None


class FrozenInitCopy:
    """Mixin for models with a centering copy `net_init`: it stays in eval mode (no dropout, BatchNorm statistics
    frozen), as the original's baseline, whatever `train()` is called with."""

    net_init: nn.Module | None

    def train(self, mode: bool = True):
        super().train(mode)
        if self.net_init is not None:
            self.net_init.eval()
        return self


class MLP(FrozenInitCopy, PreTrainedModel):
    """Fully connected network f(x) = readout(...)/gamma, optionally centred: f(x) - f_init(x)."""

    config: MLPConfig
    config_class = MLPConfig
    base_model_prefix = "net"
    main_input_name = "x"
    # The loss is a plain mean: the Trainer must divide it by the gradient-accumulation steps itself.
    accepts_loss_kwargs = False

    def __init__(self, config: MLPConfig) -> None:
        super().__init__(config)
        self.net = MLPNetwork(config)
        # Centering keeps a frozen copy of the initial network. Its tensors are buffers, not parameters: saved
        # in the state dict (a resumed or reloaded model subtracts the same function) but never trained, even
        # after `from_pretrained`, which re-creates parameters with requires_grad=True.
        self.net_init = _as_buffers(MLPNetwork(config)) if config.centering else None
        self.post_init()
        if self.net_init is not None and self.net.input_layer.weight.device.type != "meta":
            self.net_init.load_state_dict(self.net.state_dict())
        if config.parameterization == "mup":
            self.set_mup_base_shapes()

    def set_mup_base_shapes(self) -> None:
        """Attach `infshape` to every parameter (what `mup.MuSGD`/`mup.MuAdam` read). Idempotent."""
        try:  # in a `try`: the custom-code import scan skips it, so mup stays optional where this file loads
            from mup import set_base_shapes
        except ImportError as e:
            raise ImportError(MUP_MISSING) from e

        cfg = self.config

        def shapes(width: int) -> dict[str, torch.Size]:
            with torch.device("meta"):
                net = MLPNetwork(cfg, width=width)
            return {name: p.shape for name, p in net.named_parameters()}

        # On the trained network only: the frozen centering copy holds buffers, which carry no `infshape`.
        set_base_shapes(
            self.net, shapes(cfg.mup_base_width), delta=shapes(cfg.mup_base_width + 1), rescale_params=False
        )

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        if not isinstance(module, nn.Linear):
            return
        cfg = self.config
        fan_in = module.weight.shape[1]
        gain = float(cfg.init_gain)
        if isinstance(module, MupifyLinear):  # mupify: weights and biases N(0, std^2)
            init.normal_(module.weight, mean=0.0, std=module.init_std)
            if module.bias is not None:
                init.normal_(module.bias, mean=0.0, std=module.init_std)
            return
        if cfg.parameterization == "standard" and cfg.init == "pytorch":
            # nn.Linear.reset_parameters: kaiming_uniform(a=sqrt(5)) = U(+-1/sqrt(fan_in)), bias the same
            # (init_gain scales both bounds)
            bound = gain / math.sqrt(fan_in)
            init.uniform_(module.weight, -bound, bound)
            if module.bias is not None:
                init.uniform_(module.bias, -bound, bound)
            return
        if cfg.parameterization == "ntk":
            std = gain
        elif cfg.parameterization == "mup" and getattr(module, "_hfe_readout", False):
            std = 0.0 if cfg.readout_zero_init else gain * math.sqrt(module.width_mult() / fan_in)
        else:
            std = gain / math.sqrt(fan_in)
        if std == 0.0:
            init.zeros_(module.weight)
        else:
            init.normal_(module.weight, mean=0.0, std=std)
        if module.bias is not None:
            init.zeros_(module.bias)

    def hidden_states(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Post-activation hidden layers of the trained network, each (B, width) (grabs, coord checks)."""
        return self.net(x, return_hidden=True)[1]

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> MLPOutput:
        out = self.net(x)  # (B, d_out)
        if self.net_init is not None:
            with torch.no_grad():
                baseline = self.net_init(x)  # (B, d_out), frozen
            out = out - baseline
        return mse_output(out / self.config.gamma, labels, f"MLP: expected (B,) or (B, d_out={self.config.d_out})")


def mse_output(out: torch.Tensor, labels: torch.Tensor | None, hint: str, squeeze: bool = False) -> MLPOutput:
    """Predictions (B, 1) become (B,) for 1-D labels (or always, with `squeeze`), and the MSE against
    `labels` when given; a shape mismatch is one clear error ending in `hint`."""
    if out.dim() > 1 and out.shape[-1] == 1 and (labels.dim() == 1 if labels is not None else squeeze):
        out = out.squeeze(-1)  # (B,)
    loss = None
    if labels is not None:
        if labels.shape != out.shape:
            raise ValueError(
                f"labels of shape {tuple(labels.shape)} do not match predictions of shape {tuple(out.shape)}; {hint}"
            )
        loss = F.mse_loss(out, labels.to(out.dtype))
    return MLPOutput(loss=loss, predictions=out)


__all__ = [
    "MLP",
    "MUP_MISSING",
    "FrozenInitCopy",
    "MLPNetwork",
    "MLPOutput",
    "MupifyLinear",
    "Readout",
    "ScaledLinear",
    "mse_output",
]
