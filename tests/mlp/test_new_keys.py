"""Every key the modelscape-parity work added: a bad value is one line `config error: <key>=...`, exit 2, and
nothing written (run in-process through `hf_experiments.cli.main`, as `trainers/run.py` does)."""

from __future__ import annotations

import pytest

from tests.helpers import assert_config_error

MLP = {"experiment": "mlp", "width": 8, "n_samples": 8, "n_test": 8, "dim": 3, "max_steps": 2, "report_to": "none"}

# (name, overrides, key named in the error, words in the error)
CASES = [
    ("unknown parameterization", {"parameterization": "mupp"}, "parameterization", "mupify"),
    ("unknown mupify_param", {"parameterization": "mupify", "mupify_param": "sp"}, "mupify_param", "ntp"),
    ("unknown init", {"init": "kaiming"}, "init", "pytorch"),
    ("d_out 0", {"d_out": 0}, "d_out", ">= 1"),
    ("model_class missing", {"model_class": "nowhere_pkg.nets:Net"}, "model_class", "could not be found"),
    (
        "model_class with muP",
        {"model_class": "torch.nn:Linear", "parameterization": "mup"},
        "parameterization",
        "standard",
    ),
    ("model_kwargs without model_class", {"model_kwargs": {"a": 1}}, "model_kwargs", "model_class"),
    (
        "model_kwargs not an object",
        {"model_class": "torch.nn:Linear", "model_kwargs": "[1]"},
        "model_kwargs",
        "JSON object",
    ),
    ("loss misspelt", {"loss": "MSELos"}, "loss", "did you mean 'MSELoss'"),
    ("loss path missing", {"loss": "nowhere_pkg.losses:l1"}, "loss", "could not be found"),
    ("loss_kwargs not JSON", {"loss_kwargs": "{delta: 1"}, "loss_kwargs", "JSON object"),
    ("optimizer misspelt", {"optimizer": "Adamm"}, "optimizer", "did you mean 'Adam'"),
    ("optimizer with muP", {"optimizer": "Adam", "parameterization": "mup"}, "optimizer", "MuSGD"),
    ("optimizer_kwargs a list", {"optimizer_kwargs": [0.9]}, "optimizer_kwargs", "a string"),
    ("gamma_lr_rule unknown", {"gamma_lr_rule": "sometimes"}, "gamma_lr_rule", "readme"),
    ("hermite_basis unknown", {"hermite_basis": "pca"}, "hermite_basis", "sample_pca"),
    ("pca_samples 0", {"pca_samples": 0}, "pca_samples", "[1, inf]"),
    ("live function in a file", {"batch_fn": "live:__main__.my_bfn"}, "batch_fn", "in-process"),
    ("a module that is no loss", {"loss": "ReLU"}, "loss", "torch.nn loss class name"),
    ("loss_kwargs it does not take", {"loss": "HuberLoss", "loss_kwargs": {"bogus": 1}}, "loss_kwargs", "delta"),
    (
        "optimizer_kwargs misspelt",
        {"optimizer": "SGD", "optimizer_kwargs": {"momentm": 0.9}},
        "optimizer_kwargs",
        "momentum",
    ),
    ("the abstract optimizer", {"optimizer": "Optimizer"}, "optimizer", "class name"),
    (
        "model_kwargs misspelt",
        {"model_class": "tests.mlp.test_modelscape_port:SimpleResNet", "model_kwargs": {"num_blokcs": 5}},
        "model_kwargs",
        "num_blokcs",
    ),
    ("init with model_class", {"model_class": "torch.nn:Linear", "init": "normal"}, "init", "initialises itself"),
    (
        "init_gain with model_class",
        {"model_class": "torch.nn:Linear", "init_gain": 2.0},
        "init_gain",
        "initialises itself",
    ),
]


@pytest.mark.parametrize(("name", "overrides", "key", "words"), CASES, ids=[c[0] for c in CASES])
def test_bad_value_is_one_line_exit_2_and_nothing_written(tmp_path, monkeypatch, capsys, name, overrides, key, words):
    assert_config_error(tmp_path, monkeypatch, capsys, {**MLP, **overrides}, key, words)


def test_a_dotted_sweep_key_must_name_a_kwargs_object(tmp_path):
    from hf_experiments.sweeps.plan import plan_sweep

    cfg = {**MLP, "save_root": str(tmp_path), "sweep": {"width.x": [1]}}
    with pytest.raises(ValueError, match="unknown key"):
        plan_sweep(cfg)
    cfg["sweep"] = {"batch_fn_kwargs.slope": [1.0, 2.0]}
    cfg["batch_fn_kwargs"] = {"dim": 3}
    jobs = plan_sweep(cfg).jobs
    assert [j.config["batch_fn_kwargs"] for j in jobs] == [{"dim": 3, "slope": 1.0}, {"dim": 3, "slope": 2.0}]
