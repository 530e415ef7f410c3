"""muP coordinate check (the model for modelscape's muP spectral-norm test): after a few optimizer steps at a
fixed learning rate, the coordinate-wise size of the update of the network's output and last hidden layer
stays O(1) across widths under muP, and grows with the width under the standard parameterisation."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import TrainingArguments

from hf_experiments.mlp.configuration_mlp import MLPConfig
from hf_experiments.mlp.mlp_trainer import build_optimizer
from hf_experiments.mlp.modeling_mlp import MLP

WIDTHS = (64, 256, 1024)
BASE = 64


def update_sizes(parameterization: str, width: int, optim: str, lr: float, steps: int = 3) -> tuple[float, float]:
    """Mean |change| of the output and of the last hidden layer after `steps` full-batch steps."""
    torch.manual_seed(0)
    x, y = torch.randn(64, 8), torch.randn(64)
    torch.manual_seed(1)
    model = MLP(
        MLPConfig(d_in=8, width=width, depth=2, parameterization=parameterization, mup_base_width=BASE, init="normal")
    )
    args = TrainingArguments(output_dir="unused", optim=optim, learning_rate=lr, report_to="none", use_cpu=True)
    opt = build_optimizer(model, args)
    with torch.no_grad():
        f0, h0 = model(x).predictions.clone(), model.hidden_states(x)[-1].clone()
    for _ in range(steps):
        opt.zero_grad()
        model(x, labels=y).loss.backward()
        opt.step()
    with torch.no_grad():
        f1, h1 = model(x).predictions, model.hidden_states(x)[-1]
    return float((f1 - f0).abs().mean()), float((h1 - h0).abs().mean())


def spread(values: list[float]) -> float:
    return max(values) / min(values)


@pytest.mark.parametrize(("optim", "lr"), [("sgd", 0.05), ("adamw_torch", 1e-3)])
def test_mup_keeps_update_size_constant_across_widths_and_standard_does_not(optim, lr):
    mup = [update_sizes("mup", w, optim, lr) for w in WIDTHS]
    sp = [update_sizes("standard", w, optim, lr) for w in WIDTHS]
    # muP: output and hidden updates are O(1): within 1.5x of each other over a 16x range of widths.
    assert spread([f for f, _ in mup]) < 1.5, mup
    assert spread([h for _, h in mup]) < 1.5, mup
    # Standard parameterisation: the output update grows with the width (~linearly with SGD).
    assert sp[-1][0] / sp[0][0] > 8, sp
    assert sp[0][0] < sp[1][0] < sp[2][0]
    # At the base width the two parameterisations are the same network with the same optimizer.
    assert mup[0] == pytest.approx(sp[0], rel=1e-5)


def test_mup_layers_get_the_mup_package_learning_rates():
    model = MLP(MLPConfig(d_in=8, width=256, depth=3, parameterization="mup", mup_base_width=64))
    args = TrainingArguments(output_dir="unused", optim="sgd", learning_rate=0.1, report_to="none", use_cpu=True)
    opt = build_optimizer(model, args)
    lr_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    net = model.net
    m = 256 / 64
    # MuSGD: vector-like weights (one width dimension: input and readout) lr x m, hidden matrices lr x 1.
    assert lr_of[id(net.input_layer.weight)] == pytest.approx(0.1 * m)
    assert lr_of[id(net.hidden_layers[0].weight)] == pytest.approx(0.1)
    assert lr_of[id(net.output_layer.weight)] == pytest.approx(0.1 * m)
    # Readout initialised with variance g^2 m / fan_in = 1/64 and multiplied by 1/m in the forward pass.
    assert float(net.output_layer.weight.detach().std()) == pytest.approx(64**-0.5, rel=0.35)
    x = torch.randn(3, 256)
    torch.testing.assert_close(net.output_layer(x), x @ net.output_layer.weight.T / m + net.output_layer.bias)


def test_mupify_keeps_the_sgd_update_size_constant_across_widths():
    """The original's muP (mupify, param mup) with SGD: the output and hidden-layer updates stay within 2x over a
    16x range of widths, where the standard parameterisation's output update grows > 8x (test above). Smaller than
    the `mup` package's at the same lr (no base width): measured 2.3-4x."""
    mupify = [update_sizes("mupify", w, "sgd", 0.05) for w in WIDTHS]
    mup = [update_sizes("mup", w, "sgd", 0.05) for w in WIDTHS]
    assert spread([f for f, _ in mupify]) < 2.0, mupify
    assert spread([h for _, h in mupify]) < 2.0, mupify
    assert all(m[0] > 2 * f[0] for m, f in zip(mup, mupify)), (mup, mupify)


def test_mupify_layers_follow_mupifys_rules():
    """Multiplier, learning-rate factor and init std per layer, from mupify's definitions worked out by hand for
    d_in=8, width=256: readin / hidden / readout."""
    d, w = 8, 256
    expected = {
        "mup": [(math.sqrt(w / d), 1, w**-0.5), (1, 1, w**-0.5), (w**-0.5, 1, w**-0.5)],
        "ntp": [(d**-0.5, 1, 1), (w**-0.5, 1, 1), (w**-0.5, 1, 1)],
        "mfp": [(d**-0.5, w, 1), (w**-0.5, w, 1), (1 / w, w, 1)],
        "mup-lr": [(1, w / d, d**-0.5), (1, 1, w**-0.5), (1, 1 / w, 1 / w)],
        "ntp-lr": [(1, 1 / d, d**-0.5), (1, 1 / w, w**-0.5), (1, 1 / w, w**-0.5)],
    }
    for param, layers in expected.items():
        net = MLP(MLPConfig(d_in=d, width=w, depth=2, parameterization="mupify", mupify_param=param)).net
        got = [
            (m.multiplier, m.lr_multiplier, m.init_std) for m in (net.input_layer, *net.hidden_layers, net.output_layer)
        ]
        assert got == [pytest.approx(e) for e in layers], param
    torch.manual_seed(0)
    model = MLP(MLPConfig(d_in=d, width=w, depth=2, parameterization="mupify"))
    args = TrainingArguments(output_dir="unused", optim="sgd", learning_rate=0.1, report_to="none", use_cpu=True)
    lr_of = {id(p): g["lr"] for g in build_optimizer(model, args).param_groups for p in g["params"]}
    assert set(lr_of.values()) == {0.1}  # mup: every layer at the base lr
    std = float(model.net.hidden_layers[0].weight.detach().std())
    assert std == pytest.approx(w**-0.5, rel=0.05) and float(
        model.net.hidden_layers[0].bias.detach().std()
    ) == pytest.approx(w**-0.5, rel=0.3)


@pytest.mark.parametrize(("param", "factors"), [("mfp", (256, 256, 256)), ("mup-lr", (256 / 8, 1, 1 / 256))])
def test_mupify_learning_rates_per_layer(param, factors):
    """build_optimizer gives each layer lr x its mupify learning-rate factor (readin, hidden, readout), weights
    and biases alike."""
    model = MLP(MLPConfig(d_in=8, width=256, depth=2, parameterization="mupify", mupify_param=param))
    args = TrainingArguments(output_dir="unused", optim="sgd", learning_rate=0.1, report_to="none", use_cpu=True)
    lr_of = {id(p): g["lr"] for g in build_optimizer(model, args).param_groups for p in g["params"]}
    net = model.net
    for layer, factor in zip((net.input_layer, net.hidden_layers[0], net.output_layer), factors):
        assert lr_of[id(layer.weight)] == pytest.approx(0.1 * factor)
        assert lr_of[id(layer.bias)] == pytest.approx(0.1 * factor)
