"""The `mlp` experiment: model parameterisations, batch functions (online/offline, built-in and user), seeds,
a CPU run end to end and an exact resume of an online run."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel, TrainingArguments

from hf_experiments.core.config import ConfigError
from hf_experiments.core.parsing import parse_config_strict
from hf_experiments.mlp.batch_functions import (
    BatchSource,
    OnlineBatches,
    parse_monomial,
    powerlaw_eigenvalues,
    powerlaw_hermite,
    resolve_batch_fn,
)
from hf_experiments.mlp.configuration_mlp import MLPConfig, gamma_lr
from hf_experiments.mlp.mlp_trainer import build_optimizer
from hf_experiments.mlp.modeling_mlp import MLP
from tests.mlp.helpers import build_experiment, run_here, tiny_mlp_config, write

# --- model --------------------------------------------------------------------------------------------------


def test_ntk_forward_is_scaled_weight_product():
    torch.manual_seed(0)
    model = MLP(MLPConfig(d_in=3, width=8, depth=2, parameterization="ntk"))
    x = torch.randn(5, 3)
    net = model.net
    h = torch.relu(x @ net.input_layer.weight.T / math.sqrt(3) + net.input_layer.bias)
    h = torch.relu(h @ net.hidden_layers[0].weight.T / math.sqrt(8) + net.hidden_layers[0].bias)
    expected = (h @ net.output_layer.weight.T / math.sqrt(8) + net.output_layer.bias).squeeze(-1)
    torch.testing.assert_close(model(x).predictions.squeeze(-1), expected)
    # NTK weights are O(1) entries; standard ones shrink with the fan-in.
    assert 0.7 < float(net.hidden_layers[0].weight.detach().std()) < 1.3


def test_gamma_divides_output_and_rescales_lr():
    torch.manual_seed(0)
    base = MLP(MLPConfig(d_in=3, width=8, gamma=1.0))
    for gamma, lr_factor in ((0.5, 0.25), (2.0, 2.0)):
        scaled = MLP(MLPConfig(d_in=3, width=8, gamma=gamma))
        scaled.load_state_dict(base.state_dict())
        x = torch.randn(4, 3)
        torch.testing.assert_close(scaled(x).predictions * gamma, base(x).predictions)
        assert gamma_lr(0.1, gamma) == pytest.approx(0.1 * lr_factor)
        args = TrainingArguments(output_dir="unused", optim="sgd", learning_rate=0.1, report_to="none", use_cpu=True)
        opt = build_optimizer(scaled, args)
        assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.1 * lr_factor] * len(opt.param_groups))


def test_centering_starts_at_zero_and_round_trips(tmp_path):
    torch.manual_seed(0)
    model = MLP(MLPConfig(d_in=3, width=8, centering=True))
    x = torch.randn(6, 3)
    assert torch.count_nonzero(model(x).predictions) == 0
    with torch.no_grad():
        model.net.output_layer.weight.add_(0.5)  # "training" moves the network, not its frozen copy
    moved = model(x).predictions
    assert moved.abs().max() > 0
    model(x, labels=torch.ones(6)).loss.backward()  # gradients reach the network through the subtraction
    assert model.net.output_layer.weight.grad.abs().sum() > 0
    model.save_pretrained(tmp_path)
    reloaded = AutoModel.from_pretrained(tmp_path)
    torch.testing.assert_close(reloaded(x).predictions, moved)
    assert not list(reloaded.net_init.parameters())  # the frozen copy is buffers: never trained
    assert all(n.startswith("net.") for n, _ in reloaded.named_parameters())


def test_mlp_config_rejects_bad_values():
    with pytest.raises(ValueError, match="parameterization='mu'"):
        MLPConfig(parameterization="mu")
    with pytest.raises(ValueError, match="depth=0"):
        MLPConfig(depth=0)


# --- batch functions ----------------------------------------------------------------------------------------


def test_powerlaw_hermite_has_the_promised_statistics():
    rng = np.random.default_rng(0)
    x, y = powerlaw_hermite(
        200_000, rng, dim=6, alpha=1.5, offset=3, target_monomials=["0"], hermite_basis="population"
    )
    lam = powerlaw_eigenvalues(6, 1.5, 3)
    assert lam.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(x.var(0), lam, rtol=0.02)
    # He_1 target = the whitened first coordinate exactly.
    np.testing.assert_allclose(y, x[:, 0] / np.sqrt(lam[0]), rtol=1e-4, atol=1e-5)
    _, y2 = powerlaw_hermite(200_000, rng, dim=6, target_monomials=["0^2*3"], hermite_basis="population")
    # Orthonormal Hermite monomials: mean 0, variance 1; He_2(z0) He_1(z3) is uncorrelated with z0.
    assert abs(y2.mean()) < 0.02 and y2.var() == pytest.approx(1.0, rel=0.05)
    assert parse_monomial("0^2*3") == {0: 2, 3: 1}
    with pytest.raises(ValueError, match="target_monomials"):
        parse_monomial("x^2")


def test_user_batch_functions_by_import_path(tmp_path):
    fn = resolve_batch_fn("tests.mlp.helpers:linear_target")
    src = BatchSource(fn, {"dim": 5, "slope": 3.0}, seed=1, n_samples=8, n_test=4)
    x, y = src.batch(0)
    assert x.shape == (8, 5) and torch.allclose(y, 3.0 * x[:, 0])
    # The original's factory form works unchanged.
    factory = BatchSource(resolve_batch_fn("tests.mlp.helpers:modelscape_style_bfn"), {"dim": 2}, 1, 8, 4)
    x, y = factory.batch(3)
    assert x.shape == (8, 2) and torch.allclose(y, x.sum(1))
    # A function in a plain file.
    path = tmp_path / "my_data.py"
    path.write_text("import numpy as np\ndef const(n, rng):\n    return np.ones((n, 2)), np.zeros(n)\n")
    x, y = BatchSource(resolve_batch_fn(f"{path}:const"), {}, 0, 3, 3).batch(0)
    assert x.tolist() == [[1.0, 1.0]] * 3 and y.tolist() == [0.0] * 3
    with pytest.raises(ValueError, match=r"batch_fn='no_such_module:f' could not be (found|imported)"):
        resolve_batch_fn("no_such_module:f")


def test_config_names_a_user_batch_function_and_its_kwargs(tmp_path):
    cfg = tiny_mlp_config(tmp_path, batch_fn="tests.mlp.helpers:linear_target", dim=3, batch_fn_kwargs={"slope": 2.0})
    exp, _ = build_experiment(cfg, tmp_path)
    x, y = exp.source.batch(0)
    assert x.shape == (32, 3) and torch.allclose(y, 2.0 * x[:, 0])  # config value dim, kwarg slope
    model = exp.build_model()
    assert (model.config.d_in, model.config.d_out) == (3, 1)  # sizes read from the data
    path = write(tmp_path / "cli.json", cfg)
    run_cfg = parse_config_strict(["--config", str(path), "--batch_fn_kwargs", '{"slope": 5}'])
    exp = run_cfg.experiment_cls(run_cfg)
    exp.build_data()
    x, y = exp.source.batch(0)
    assert torch.allclose(y, 5.0 * x[:, 0])


def test_online_batches_are_fresh_offline_fixed_and_streams_resume(tmp_path):
    exp, data = build_experiment(tiny_mlp_config(tmp_path, online=True), tmp_path)
    assert "train" not in data  # online: no fixed training set
    b0, b1 = exp.source.batch(0), exp.source.batch(1)
    assert not torch.equal(b0[0], b1[0])
    torch.testing.assert_close(exp.source.batch(0)[0], b0[0])  # a step's batch is a pure function of the step
    stream = iter(OnlineBatches(exp.source))
    first = [next(stream)["x"] for _ in range(4)]
    resumed = next(iter(OnlineBatches(exp.source, start_step=lambda: 2)))["x"]
    torch.testing.assert_close(resumed, first[2])

    off, off_data = build_experiment(tiny_mlp_config(tmp_path, online=False), tmp_path)
    x_tr = off_data["train"][:]["x"]
    assert x_tr.shape == (32, 4)
    torch.testing.assert_close(off.train_batch(1)[0], x_tr)
    torch.testing.assert_close(off.train_batch(7)[0], x_tr)  # the same full batch at every step
    assert not torch.equal(x_tr, off_data["validation"][:32]["x"])  # test set drawn separately


def test_trials_differ_in_data_and_initial_weights_and_repeat_exactly(tmp_path):
    runs = {}
    for key, trial in (("a", 0), ("b", 1), ("a_again", 0)):
        exp, data = build_experiment(tiny_mlp_config(tmp_path, trial=trial, online=False), tmp_path)
        model = exp.build_model()
        runs[key] = (data["train"][:]["x"], model.net.input_layer.weight.detach().clone())
    assert not torch.equal(runs["a"][0], runs["b"][0])
    assert not torch.equal(runs["a"][1], runs["b"][1])
    assert torch.equal(runs["a"][0], runs["a_again"][0]) and torch.equal(runs["a"][1], runs["a_again"][1])


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ({"parameterization": "mup", "optim": "adafactor"}, "optim"),
        ({"per_device_train_batch_size": 7}, "per_device_train_batch_size"),
        ({"target_monomials": ["9"]}, "target_monomials"),
        ({"batch_fn": "nowhere:fn"}, "batch_fn"),
        ({"grabs": ["nowhere:fn"]}, "grabs"),
        ({"loss_checkpoints": [-1.0]}, "loss_checkpoints"),
    ],
)
def test_bad_configs_are_rejected_before_running(tmp_path, override, key):
    path = write(tmp_path / "bad.json", tiny_mlp_config(tmp_path, **override))
    with pytest.raises(ConfigError) as err:
        parse_config_strict(["--config", str(path)])
    assert err.value.key == key
    assert not (tmp_path / "bad").exists()


# --- end to end ---------------------------------------------------------------------------------------------


def test_cpu_run_learns_and_writes_the_run_folder(tmp_path):
    cfg = tiny_mlp_config(
        tmp_path,
        exp_name="run",
        max_steps=60,
        learning_rate=0.5,
        parameterization="mup",
        mup_base_width=8,
        loss_checkpoints=[0.5],
        loss_checkpoints_relative=True,
        stop_at_loss_checkpoints=False,
    )
    assert run_here(write(tmp_path / "run.json", cfg)) == 0
    run_dir = tmp_path / "run"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["train_steps"] == 60
    assert metrics["eval_loss"] < 0.5 * metrics["initial_loss"]  # it learned the target
    assert 1 <= metrics["step_to_rel_loss_0.5"] <= 60
    saved = json.loads((run_dir / "run_config.json").read_text())
    assert saved["per_device_train_batch_size"] == 32  # the batch is n_samples
    reloaded = AutoModel.from_pretrained(run_dir / "model")
    assert reloaded.config.parameterization == "mup" and reloaded.config.d_in == 4


def test_interrupted_online_run_resumes_exactly(tmp_path):
    straight = tiny_mlp_config(tmp_path, exp_name="straight", max_steps=12, save_steps=6)
    assert run_here(write(tmp_path / "straight.json", straight)) == 0
    halves = tiny_mlp_config(tmp_path, exp_name="halves", max_steps=6, save_steps=6)
    assert run_here(write(tmp_path / "halves.json", halves)) == 0
    (tmp_path / "halves" / "metrics.json").unlink()
    # Rerunning with the full length continues from checkpoint-6 with the batches of steps 7..12.
    assert run_here(write(tmp_path / "halves.json", {**halves, "max_steps": 12})) == 0
    a = load_file(str(tmp_path / "straight" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "halves" / "model" / "model.safetensors"))
    for name in a:
        torch.testing.assert_close(a[name], b[name])
