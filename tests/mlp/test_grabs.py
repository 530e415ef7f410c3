"""Grabs: built-ins equal their direct computation, user grabs by import path receive the job's values, and
they are recorded at step 0, every k steps and at the end."""

from __future__ import annotations

import json

import pytest
import torch

from hf_experiments.mlp.configuration_mlp import MLPConfig
from hf_experiments.mlp.grabs import gram_diag, ntk_trace, resolve_grabs, to_jsonable, weight_norms
from hf_experiments.mlp.modeling_mlp import MLP
from tests.mlp.helpers import run_here, tiny_mlp_config, write


def job_values(width, trial, learning_rate, step, **kwargs):
    """A user grab asking for config values by name (modelscape's 'grabs receive the job's values')."""
    return {"width": width, "trial": trial, "learning_rate": learning_rate, "step": step}


def test_data_sum(X_te, X_tr, **kwargs):
    """Sums of the test inputs and of the current training batch."""
    return [float(X_te.sum()), float(X_tr.sum())]


test_data_sum.__test__ = False  # a grab, not a pytest test


def test_builtin_grabs_equal_their_direct_computation():
    torch.manual_seed(0)
    model = MLP(MLPConfig(d_in=3, width=6, depth=2, centering=True))
    x = torch.randn(5, 3)
    w_in = model.net.input_layer.weight.detach()
    assert gram_diag(model) == pytest.approx(torch.diag(w_in.T @ w_in).tolist(), rel=1e-5)
    norms = weight_norms(model)
    assert set(norms) == {"input_layer.weight", "hidden_layers.0.weight", "output_layer.weight"}
    assert norms["input_layer.weight"] == pytest.approx(float(w_in.norm()))
    # NTK trace = sum_i ||grad_theta f(x_i)||^2, here by plain autograd one sample at a time.
    with torch.no_grad():
        model.net.output_layer.weight.add_(0.3)  # move away from the centred zero function
    expected = 0.0
    for i in range(len(x)):
        model.zero_grad()
        model(x[i : i + 1]).predictions.sum().backward()
        expected += sum(float((p.grad**2).sum()) for p in model.parameters())
    assert ntk_trace(model, x) == pytest.approx(expected, rel=1e-4)


def test_resolve_grabs_names_and_errors():
    grabs = resolve_grabs(
        ["weight_norms", "vals=tests.mlp.test_grabs:job_values", "tests.mlp.test_grabs:test_data_sum"]
    )
    assert list(grabs) == ["weight_norms", "vals", "test_data_sum"]
    with pytest.raises(ValueError, match="used twice"):
        resolve_grabs(["weight_norms", "weight_norms"])
    with pytest.raises(ValueError, match=r"could not be (found|imported)"):
        resolve_grabs(["nowhere.module:fn"])
    assert to_jsonable({"a": torch.ones(2), "b": (torch.tensor(3.0),)}) == {"a": [1.0, 1.0], "b": [3.0]}


def test_grabs_run_every_k_steps_and_receive_the_job_values(tmp_path):
    cfg = tiny_mlp_config(
        tmp_path,
        exp_name="grabs",
        max_steps=10,
        width=12,
        trial=3,
        grab_every=4,
        grabs=["weight_norms", "vals=tests.mlp.test_grabs:job_values", "tests.mlp.test_grabs:test_data_sum"],
    )
    assert run_here(write(tmp_path / "g.json", cfg)) == 0
    records = json.loads((tmp_path / "grabs" / "grabs.json").read_text())
    assert [r["step"] for r in records["vals"]] == [0, 4, 8, 10]  # init, every 4 steps, the end
    assert records["vals"][-1]["value"] == {"width": 12, "trial": 3, "learning_rate": 0.1, "step": 10}
    # Online: the training batch changes between records, the test set does not.
    sums = [r["value"] for r in records["test_data_sum"]]
    assert len({s[0] for s in sums}) == 1 and len({s[1] for s in sums}) == len(sums)
    metrics = json.loads((tmp_path / "grabs" / "metrics.json").read_text())
    assert (
        metrics["grab_weight_norms/output_layer.weight"] == records["weight_norms"][-1]["value"]["output_layer.weight"]
    )
