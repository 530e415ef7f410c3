"""modelscape's own test suite (JoeyTurn/modelscape `tests/`), ported to this package's API: each test below
names the original it ports; `docs/sweeps_and_mlp.md` has the table (original / ours / tolerance).

The originals call `run_job` / `run_job_iterator` with a `global_config` dict and a batch function; here the
same jobs go through `hf_experiments.sweeps.run_sweep` with the functions defined in this file (live objects,
as a notebook would pass them). The two GPU-only originals are covered by their CPU counterparts plus a test of
the refusal a subprocess engine gives for live functions.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from hf_experiments.mlp.configuration_mlp import MLPConfig
from hf_experiments.mlp.mlp_trainer import build_optimizer
from hf_experiments.mlp.modeling_mlp import MLP
from hf_experiments.sweeps import load_grabs, run_sweep
from tests.helpers import TIMING_KEYS  # noqa: F401  (keeps the shared helpers importable here)


def base_config(tmp_path: Path, name: str, **overrides) -> dict:
    """The originals' `_base_global_config`: 2 steps, lr 1e-2, loss checkpoint 0.1, no EMA, online, 8 test
    samples, seed 0, dim 4, width 8, depth 2."""
    cfg = {
        "experiment": "mlp",
        "exp_name": name,
        "save_root": str(tmp_path),
        "learning_rate": 1e-2,
        "max_steps": 2,
        "loss_checkpoints": [1e-1],
        "ema_smoother": 0.0,
        "online": True,
        "n_test": 8,
        "seed": 0,
        "sweep_seed": "fixed",
        "dim": 4,
        "width": 8,
        "depth": 2,
        "logging_steps": 1,
        "save_steps": 1000,
        "report_to": "none",
        "per_device_eval_batch_size": 8,
    }
    cfg.update(overrides)
    return cfg


# --- batch functions and grabs of the original tests (the factory form: bfn(bsz, gen, X, y) -> batch_fn(step))


def random_bfn(bsz, gen=None, X=None, y=None, dim=4, **kwargs):
    def batch_fn(step):
        return torch.randn(bsz, dim, generator=gen), torch.randn(bsz, generator=gen)

    return batch_fn


def ce_bfn(bsz, gen=None, X=None, y=None, dim=4, num_classes=3, **kwargs):
    def batch_fn(step):
        return torch.randn(bsz, dim, generator=gen), torch.randint(0, num_classes, (bsz,), generator=gen)

    return batch_fn


def image_bfn(bsz, gen=None, X=None, y=None, **kwargs):
    def batch_fn(step):
        return torch.randn(bsz, 1, 8, 8, generator=gen), torch.randn(bsz, generator=gen)

    return batch_fn


def sequence_bfn(bsz, gen=None, X=None, y=None, **kwargs):
    def batch_fn(step):
        return torch.randn(bsz, 4, 8, generator=gen), torch.randn(bsz, generator=gen)

    return batch_fn


def device_grab(model, **kwargs):
    return 1 if str(next(model.parameters()).device) == "cpu" else 0


def xte_sum_grab(X_te, **kwargs):
    return float(X_te.sum().item())


def first_layer_weight_head(model, **kwargs):
    w = (
        model.input_layer.weight
        if hasattr(model, "input_layer")
        else next(p for p in model.parameters() if p.ndim >= 2)
    )
    return w.detach().flatten()[:10].cpu().numpy()


def optimizer_name_grab(opt, **kwargs):
    return opt.__class__.__name__


# --- the original tests' models (our code, the same architectures) -------------------------------------------


class CustomMLP(nn.Module):
    """test_model_override's CustomMLP: input layer, width x width hidden layers, output layer, ReLU."""

    def __init__(self, d_in=1, width=8, depth=2, d_out=1, **kwargs):
        super().__init__()
        self.input_layer = nn.Linear(d_in, width)
        self.hidden_layers = nn.ModuleList([nn.Linear(width, width) for _ in range(depth - 1)])
        self.output_layer = nn.Linear(width, d_out)

    def forward(self, x):
        h = torch.relu(self.input_layer(x))
        for layer in self.hidden_layers:
            h = torch.relu(layer(h))
        return self.output_layer(h)


class BasicBlock(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)

    def forward(self, x):
        return torch.relu(self.conv2(torch.relu(self.conv1(x))) + x)


class SimpleResNet(nn.Module):
    """test_model_resnet's network: a conv stem, residual blocks, global average pooling, a linear readout."""

    def __init__(self, in_channels=1, width=8, num_blocks=2, d_out=1):
        super().__init__()
        self.input_layer = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.hidden_layers = nn.ModuleList([BasicBlock(width) for _ in range(num_blocks)])
        self.output_layer = nn.Linear(width, d_out)

    def forward(self, x):
        h = torch.relu(self.input_layer(x))
        for block in self.hidden_layers:
            h = block(h)
        return self.output_layer(h.mean(dim=(2, 3)))


class SimpleCNN(nn.Module):
    """test_model_variants' SimpleCNN: `depth` 3x3 convolutions, flattened into a linear readout."""

    def __init__(self, in_channels=1, img_size=8, width=16, depth=2, d_out=1, bias=True):
        super().__init__()
        self.input_layer = nn.Conv2d(in_channels, width, 3, padding=1, bias=bias)
        self.hidden_layers = nn.ModuleList([nn.Conv2d(width, width, 3, padding=1, bias=bias) for _ in range(depth - 1)])
        self.output_layer = nn.Linear(width * img_size * img_size, d_out, bias=bias)

    def forward(self, x):
        h = torch.relu(self.input_layer(x))
        for layer in self.hidden_layers:
            h = torch.relu(layer(h))
        return self.output_layer(h.flatten(1))


class SimpleTransformer(nn.Module):
    """test_model_variants' SimpleTransformer: blocks of (MLP, single-head attention), mean over positions."""

    def __init__(self, d_in=8, width=16, depth=2, d_out=1, mlp_mult=4, bias=True, seq_len=None):
        super().__init__()
        self.input_layer = nn.Linear(d_in, width, bias=bias)
        self.mlps = nn.ModuleList(
            [
                nn.Sequential(nn.Linear(width, mlp_mult * width), nn.ReLU(), nn.Linear(mlp_mult * width, width))
                for _ in range(depth)
            ]
        )
        self.attn = nn.ModuleList([nn.MultiheadAttention(width, 1, bias=bias, batch_first=True) for _ in range(depth)])
        self.output_layer = nn.Linear(width, d_out, bias=bias)

    def forward(self, x):
        h = self.input_layer(x)
        for mlp, attn in zip(self.mlps, self.attn):
            h = mlp(h)
            h = attn(h, h, h, need_weights=False)[0]
        return self.output_layer(h.mean(dim=1))


def _grab_values(sweep, name: str) -> dict[str, object]:
    """{job: the grab's final value} (the originals' `result["extras"][name]["config2outcome"]`)."""
    return {job: recs[name][-1]["value"] for job, recs in load_grabs(sweep).items()}


def _finished(df) -> bool:
    return bool((df["status"] == "finished").all())


# --- test_cpu_training.py -------------------------------------------------------------------------------------


def test_cpu_training_runs(tmp_path):
    """test_cpu_training.test_cpu_training_runs: one job trains on the CPU; a grab sees the model there."""
    sweep, df = run_sweep(
        base_config(tmp_path, "cpu"),
        iterators={"ntrain": [8], "trial": [0]},
        batch_fn=random_bfn,
        grabs={"device": device_grab},
    )
    assert _finished(df) and list(_grab_values(sweep, "device").values()) == [1]


# --- test_job_iterator_features.py ----------------------------------------------------------------------------


def test_dynamic_iterables(tmp_path):
    """test_dynamic_iterables: a generator as an iterator gives one job per value."""
    sweep, df = run_sweep(
        base_config(tmp_path, "dyn"), iterators={"ntrain": (n for n in [4, 8]), "trial": [0]}, batch_fn=random_bfn
    )
    assert len(sweep.jobs) == 2 and _finished(df)
    assert sorted(df["n_samples"]) == [4, 8] and df["eval_loss"].notna().all()


def test_iterables_that_depend_on_earlier_values(tmp_path):
    """Ours beyond the original: an iterator computed from the values before it (the learning rate per width)."""
    sweep, df = run_sweep(
        base_config(tmp_path, "dep"),
        iterators={"width": [8, 16], "learning_rate": lambda width: [0.1 / width, 0.2 / width]},
        batch_fn=random_bfn,
    )
    pairs = sorted((j.values["width"], j.values["learning_rate"]) for j in sweep.jobs)
    assert pairs == [(8, 0.0125), (8, 0.025), (16, 0.00625), (16, 0.0125)] and _finished(df)
    cfg = json.loads((sweep.jobs[1].run_dir / "run_config.json").read_text())
    assert cfg["learning_rate"] == sweep.jobs[1].values["learning_rate"]


def test_online_offline_paths(tmp_path):
    """test_online_offline_paths: both online and offline jobs produce losses."""
    for online in (True, False):
        _, df = run_sweep(
            base_config(tmp_path, f"online_{online}", online=online),
            iterators={"ntrain": [4], "trial": [0]},
            batch_fn=random_bfn,
        )
        assert _finished(df) and df["eval_loss"].notna().all()


def test_dynamic_grabs(tmp_path):
    """test_dynamic_grabs: a grab receives the job's swept value by name."""
    sweep, _ = run_sweep(
        base_config(tmp_path, "grab_alpha"),
        iterators={"ntrain": [4], "trial": [0], "alpha": [1.5, 2.5]},
        batch_fn=random_bfn,
        grabs={"alpha_val": lambda model, opt, alpha, **kwargs: float(alpha)},
    )
    assert set(_grab_values(sweep, "alpha_val").values()) == {1.5, 2.5}


def test_live_functions_refuse_a_subprocess_engine(tmp_path):
    """test_multiprocessing_cuda needs CUDA; what a CPU machine can check: jobs with notebook-defined functions
    are refused by a subprocess runner with the fix named, before anything is written."""
    with pytest.raises(ValueError, match="run it in-process"):
        run_sweep(base_config(tmp_path, "mp"), devices=["cpu", "cpu"], iterators={"trial": [0]}, batch_fn=lambda: 0)
    assert not (tmp_path / "mp").exists()


# --- test_model_override.py, test_model_resnet.py, test_model_variants.py -----------------------------------


def _run_model(tmp_path, name, model_class, bfn, **overrides):
    sweep, df = run_sweep(
        base_config(tmp_path, name, **overrides), iterators={"ntrain": [8], "trial": [0]}, batch_fn=bfn,
        model_class=model_class,
    )  # fmt: skip
    assert _finished(df), df.to_dict("records")
    saved = json.loads((sweep.jobs[0].run_dir / "model" / "config.json").read_text())
    assert saved["model_type"] == "hfe_module"  # the default MLP was not built
    return sweep, saved


def test_model_class_override(tmp_path):
    """test_model_class_override: MODEL_CLASS replaces the default MLP, built with the config's width/depth."""
    _, saved = _run_model(tmp_path, "override", CustomMLP, random_bfn)
    assert saved["model_class"].endswith("CustomMLP")
    assert saved["model_args"] == {"d_in": 4, "width": 8, "depth": 2, "d_out": 1}


def test_model_file_override(tmp_path):
    """test_model_file_override: MODEL_FILE + MODEL_NAME -> model_class 'file.py:Name'."""
    path = tmp_path / "custom_model.py"
    path.write_text(
        "import torch.nn as nn\n"
        "class FileMLP(nn.Module):\n"
        "    def __init__(self, d_in=1, width=8, depth=2, d_out=1, **kwargs):\n"
        "        super().__init__()\n"
        "        self.input_layer = nn.Linear(d_in, width)\n"
        "        self.output_layer = nn.Linear(width, d_out)\n"
        "    def forward(self, x):\n"
        "        return self.output_layer(self.input_layer(x).relu())\n"
    )
    _, saved = _run_model(tmp_path, "file", f"{path}:FileMLP", random_bfn)
    assert saved["model_class"] == f"{path.resolve()}:FileMLP"


def test_resnet_defined_in_test(tmp_path):
    """test_resnet_defined_in_test: a residual CNN on (B, 1, 8, 8) images, num_blocks through model_kwargs."""
    _, saved = _run_model(
        tmp_path, "resnet", SimpleResNet, image_bfn, model_kwargs={"in_channels": 1, "num_blocks": 2}, d_out=1
    )
    assert saved["model_args"] == {"in_channels": 1, "width": 8, "num_blocks": 2, "d_out": 1}


def test_simple_cnn_model_class(tmp_path):
    """test_simple_cnn_model_class."""
    _, saved = _run_model(tmp_path, "cnn", SimpleCNN, image_bfn, model_kwargs={"in_channels": 1, "img_size": 8})
    assert saved["model_args"]["img_size"] == 8 and saved["model_args"]["depth"] == 2


def test_simple_transformer_model_class(tmp_path):
    """test_simple_transformer_model_class: (B, 4, 8) sequences; d_in=8 given explicitly, as the original's."""
    _, saved = _run_model(
        tmp_path, "transformer", SimpleTransformer, sequence_bfn, width=16, model_kwargs={"d_in": 8, "seq_len": 4}
    )
    assert saved["model_args"]["d_in"] == 8 and saved["model_args"]["seq_len"] == 4


def test_a_plain_module_reloads_from_its_folder_and_import_path(tmp_path):
    """Ours: the saved model is safetensors weights plus the import path and constructor arguments; it reloads
    (through the Auto classes) to the same predictions."""
    from transformers import AutoModel

    sweep, saved = _run_model(tmp_path, "reload", "tests.mlp.test_modelscape_port:CustomMLP", random_bfn)
    folder = sweep.jobs[0].run_dir / "model"
    assert (folder / "model.safetensors").is_file() and saved[
        "model_class"
    ] == "tests.mlp.test_modelscape_port:CustomMLP"
    model = AutoModel.from_pretrained(folder)
    assert type(model.net) is CustomMLP and model.net_init is not None  # centering: the default
    x = torch.randn(5, 4)
    from safetensors.torch import load_file

    weights = load_file(folder / "model.safetensors")
    net = CustomMLP(**saved["model_args"])
    net.load_state_dict({k[4:]: v for k, v in weights.items() if k.startswith("net.")})
    ref = CustomMLP(**saved["model_args"])
    ref.load_state_dict({k[9:]: v for k, v in weights.items() if k.startswith("net_init.")})
    with torch.no_grad():
        expected = (net(x) - ref(x)).squeeze(-1)
        torch.testing.assert_close(model(x).predictions, expected)
        assert expected.abs().max() > 0  # the trained network moved away from its initial copy


# --- test_optimizer_loss.py ------------------------------------------------------------------------------------


def test_adam_cross_entropy_runs(tmp_path):
    """test_adam_cross_entropy_runs: optimizer "Adam" and loss "CrossEntropyLoss" on 3 classes."""
    sweep, df = run_sweep(
        base_config(tmp_path, "ce", d_out=3, optimizer="Adam", loss="CrossEntropyLoss"),
        iterators={"ntrain": [8], "trial": [0]},
        batch_fn=ce_bfn,
        grabs={"optimizer_name": optimizer_name_grab},
    )
    assert _finished(df) and list(_grab_values(sweep, "optimizer_name").values()) == ["Adam"]
    assert math.isfinite(df["eval_loss"].iloc[0]) and df["eval_loss"].iloc[0] > 0.5  # ~ln 3 for 3 random classes


# --- test_randomness_cpu.py, test_randomness_model.py (test_randomness_gpu.py: the same on CUDA) ------------


def test_trials_generate_different_data_cpu(tmp_path):
    """test_trials_generate_different_data_cpu: trials 0 and 1 draw different test sets."""
    sweep, _ = run_sweep(
        base_config(tmp_path, "rand_data", max_steps=1),
        iterators={"ntrain": [8], "trial": [0, 1]},
        batch_fn=random_bfn,
        grabs={"xte_sum": xte_sum_grab},
    )
    values = list(_grab_values(sweep, "xte_sum").values())
    assert len(values) == 2 and not np.isclose(values[0], values[1])


def test_trials_generate_different_first_layer_weights(tmp_path):
    """test_trials_generate_different_first_layer_weights: trials 0 and 1 start from different weights."""
    sweep, _ = run_sweep(
        base_config(tmp_path, "rand_init", max_steps=1),
        iterators={"ntrain": [8], "trial": [0, 1]},
        batch_fn=random_bfn,
        grabs={"w1_head": first_layer_weight_head},
    )
    heads = [np.asarray(v) for v in _grab_values(sweep, "w1_head").values()]
    assert len(heads) == 2 and heads[0].shape == (10,) and not np.allclose(heads[0], heads[1])


# --- test_mup_spectral_norm.py, test_ntp_spectral_norm.py ------------------------------------------------------


def _spectral_norms(width: int, param: str, steps: int = 10) -> tuple[float, float]:
    """The originals' `_run_width`: an MLP (depth 2) under mupify's `param`, 10 SGD steps at lr 1e-2 on random
    minibatches of 64; returns the spectral norms of g * W0 and g * (W1 - W0) of the first hidden layer. The
    originals use 320 CIFAR-10 images of two classes (not available offline); here 320 power-law inputs of
    dimension 256 with +-1 labels of a Hermite target."""
    from hf_experiments.mlp.batch_functions import powerlaw_hermite

    x, y = powerlaw_hermite(320, np.random.default_rng(0), dim=256, target_monomials=["0", "1"], pca_seed=0)
    x, y = torch.as_tensor(x), torch.sign(torch.as_tensor(y))
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model = MLP(MLPConfig(d_in=256, width=width, depth=2, parameterization="mupify", mupify_param=param))
    from transformers import TrainingArguments

    args = TrainingArguments(output_dir="unused", optim="sgd", learning_rate=1e-2, report_to="none", use_cpu=True)
    args.gamma_lr_rule = "none"
    opt = build_optimizer(model, args)
    layer = model.net.hidden_layers[0]
    w0 = layer.weight.detach().clone()
    for _ in range(steps):
        idx = torch.randint(0, len(x), (64,), generator=gen)
        opt.zero_grad()
        model(x[idx], labels=y[idx]).loss.backward()
        opt.step()
    g = layer.multiplier
    norm = lambda t: float(torch.linalg.matrix_norm(t, ord=2))
    return norm(g * w0), norm(g * (layer.weight.detach() - w0))


def _slope(widths, values) -> float:
    return float(np.polyfit(np.log(widths), np.log(values), 1)[0])


def test_mup_spectral_norms_are_o1():
    """test_mup_spectral_norms_are_o1 (same widths, steps, lr, batch and tolerances): under muP the hidden
    layer's initial and updated spectral norms stay O(1) across widths 64, 128, 256."""
    widths = [64, 128, 256]
    init, delta = zip(*(_spectral_norms(w, "mup") for w in widths))
    assert max(init) / min(init) < 3.0, init
    assert max(delta) / min(delta) < 5.0, delta


def test_ntp_spectral_norms_scale_with_width():
    """test_ntp_spectral_norms_scale_with_width (same tolerances): under NTP the initial spectral norm stays
    O(1) and the update's shrinks with the width (slope in (-1, -0.1) on log-log axes)."""
    widths = [64, 128, 256]
    init, delta = zip(*(_spectral_norms(w, "ntp") for w in widths))
    assert abs(_slope(widths, init)) < 0.2, init
    assert -1.0 < _slope(widths, delta) < -0.1, delta


def test_a_pretrained_model_class_is_built_from_its_config_class(tmp_path):
    """Ours: a `PreTrainedModel` class as model_class is built from its config class with the values that config
    names (not the wrapper's own gamma / centering: the wrapper applies them once), and reloads."""
    from transformers import AutoModel

    sweep, saved = _run_model(tmp_path, "pretrained", "hf_experiments.mlp.modeling_mlp:MLP", random_bfn)
    args = saved["model_args"]
    assert {args["d_in"], args["width"], args["depth"], args["d_out"]} == {4, 8, 2, 1}
    assert not set(args) & {"gamma", "centering", "parameterization", "init"}
    model = AutoModel.from_pretrained(sweep.jobs[0].run_dir / "model")
    assert type(model.net) is MLP and model.net.net_init is None and model.net_init is not None
    assert model(torch.randn(3, 4)).predictions.shape == (3,)


def test_two_lambdas_get_two_names_and_an_edited_function_is_reported(tmp_path, capsys):
    """Ours: live names carry a hash of the source, so two lambdas as grabs stay two functions, and rerunning
    after editing the batch function names the finished jobs that ran the old version."""
    sweep, _ = run_sweep(
        base_config(tmp_path, "versions"),
        iterators={"trial": [0]},
        batch_fn=random_bfn,
        grabs={"one": lambda **kw: 1, "two": lambda **kw: 2},
    )
    values = load_grabs(sweep)[sweep.jobs[0].name]
    assert (values["one"][-1]["value"], values["two"][-1]["value"]) == (1, 2)

    def random_bfn_edited(bsz, gen=None, **kwargs):  # same job, another batch function
        return random_bfn(bsz, gen=gen, **kwargs)

    capsys.readouterr()
    run_sweep(base_config(tmp_path, "versions"), iterators={"trial": [0]}, batch_fn=random_bfn_edited)
    assert "1 finished job(s) ran another version of batch_fn" in capsys.readouterr().out


def make_grab(k):
    def grab(**kwargs):
        return k

    return grab


def test_closures_of_one_factory_stay_two_grabs(tmp_path):
    """Two grabs made by one factory (same code, other captured value) and two lambdas differing only in a
    default argument get two live names."""
    sweep, _ = run_sweep(
        base_config(tmp_path, "closures"),
        iterators={"trial": [0]},
        batch_fn=random_bfn,
        grabs={"one": make_grab(1), "two": make_grab(2), "d1": lambda k=1, **kw: k, "d2": lambda k=2, **kw: k},
    )
    values = {name: recs[-1]["value"] for name, recs in load_grabs(sweep)[sweep.jobs[0].name].items()}
    assert values == {"one": 1, "two": 2, "d1": 1, "d2": 2}


class NoisyNet(nn.Module):
    """Dropout and BatchNorm: what a frozen centering copy must not apply in training mode."""

    def __init__(self, d_in=4, width=8, d_out=1):
        super().__init__()
        self.lin, self.bn, self.drop, self.out = (
            nn.Linear(d_in, width),
            nn.BatchNorm1d(width),
            nn.Dropout(0.5),
            nn.Linear(width, d_out),
        )

    def forward(self, x):
        return self.out(self.drop(self.bn(self.lin(x))))


def test_the_centering_copy_stays_frozen_in_training_mode():
    from hf_experiments.mlp.configuration_module import ModuleConfig
    from hf_experiments.mlp.modeling_module import ModuleModel

    model = ModuleModel(ModuleConfig(model_class="tests.mlp.test_modelscape_port:NoisyNet", centering=True)).train()
    assert model.net.training and not model.net_init.training
    x = torch.randn(16, 4)
    stats = model.net_init.bn.running_mean.clone()
    with torch.no_grad():
        a, b = model.net_init(x), model.net_init(x)
    torch.testing.assert_close(a, b)  # no dropout in the copy
    torch.testing.assert_close(model.net_init.bn.running_mean, stats)  # its statistics do not move
    assert model.net.bn.running_mean.abs().sum() == 0  # (the trained network's do, once it runs in training mode)
    model.net(x)
    assert model.net.bn.running_mean.abs().sum() > 0


def test_a_class_defined_again_in_main_reloads(monkeypatch):
    """A model class from a notebook (`live:__main__.<Name>#...`) resolves in a process that defines it again."""
    import sys

    from hf_experiments.mlp import modeling_module

    monkeypatch.setattr(sys.modules["__main__"], "ReDefined", CustomMLP, raising=False)
    monkeypatch.setattr(modeling_module, "LIVE_FACTORIES", {})
    assert modeling_module.resolve_factory("live:__main__.ReDefined#0123456789") is CustomMLP
    with pytest.raises(ValueError, match="define it again"):
        modeling_module.resolve_factory("live:__main__.NotDefinedAnywhere#0")


def test_the_pca_basis_is_the_same_for_every_job_seed(tmp_path):
    """The reference sample follows `pca_seed`, not the job's seed: jobs with other seeds learn the same target
    function (with the job seed, seed 3 gave the orthogonal target (z0 - z1) / 2)."""
    from hf_experiments.mlp.batch_functions import hermite_targets
    from tests.mlp.helpers import build_experiment, tiny_mlp_config

    for seed in (0, 3):
        exp, _ = build_experiment(tiny_mlp_config(tmp_path, seed=seed, dim=8), tmp_path)
        x, y = (t.numpy().astype(np.float64) for t in exp.test)
        np.testing.assert_allclose(y, hermite_targets(x, ["0", "1"], pca_seed=42), rtol=1e-4, atol=1e-5)
    x = np.random.default_rng(1).standard_normal((32, 8))
    assert not np.allclose(hermite_targets(x, ["0", "1"], pca_seed=0), hermite_targets(x, ["0", "1"], pca_seed=3))
