"""Our formulas against the original code's output (`data/modelscape_oracle.json`, written by running
JoeyTurn/modelscape and dkarkada/mupify: `data/make_modelscape_oracle.py` says how)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import TrainingArguments

from hf_experiments.mlp.batch_functions import hermite_targets
from hf_experiments.mlp.configuration_mlp import MLPConfig
from hf_experiments.mlp.mlp_trainer import build_optimizer
from hf_experiments.mlp.modeling_mlp import MLP

ORACLE = json.loads((Path(__file__).parent / "data" / "modelscape_oracle.json").read_text())
HERMITE = ORACLE["hermite"]


@pytest.mark.parametrize("case", HERMITE["cases"], ids=lambda c: "+".join(c["terms"]))
def test_sample_pca_hermite_targets_equal_the_originals(case):
    """The original whitens in the PCA basis of one reference sample; with the same reference sample (same seed)
    our targets equal its targets, sums of terms included (the sign convention of the basis is the SVD's)."""
    x = np.asarray(case["x"], dtype=np.float64)
    kw = {k: HERMITE[k] for k in ("alpha", "offset", "pca_samples")} | {"pca_seed": HERMITE["seed"]}
    ours = hermite_targets(x, case["terms"], hermite_basis="sample_pca", **kw)
    np.testing.assert_allclose(ours, case["y"], rtol=1e-4, atol=1e-4)
    if case["terms"] == ["0", "1"]:
        # Negative control: the population basis gets single terms right only up to sign, so the sum differs.
        pop = hermite_targets(x, case["terms"], hermite_basis="population", **kw)
        assert not np.allclose(pop, case["y"], atol=0.1)


@pytest.mark.parametrize("case", ORACLE["mupify"], ids=lambda c: f"{c['param']}-gamma{c['gamma']}")
def test_mupify_training_equals_the_original(case):
    """parameterization="mupify" is dkarkada/mupify on modelscape's MLP (multipliers on W x + b, sqrt(2) ReLU,
    per-layer learning rates, output / gamma, centred): the same initial weights give the same predictions after
    3 SGD steps."""
    config = MLPConfig(
        d_in=4, width=16, depth=3, parameterization="mupify", mupify_param=case["param"], gamma=case["gamma"],
        centering=True,
    )  # fmt: skip
    model = MLP(config)
    init = {k: torch.tensor(v) for k, v in case["init"].items()}
    model.net.load_state_dict(init)
    model.net_init.load_state_dict(init)
    args = TrainingArguments(output_dir="unused", optim="sgd", learning_rate=case["lr"], report_to="none", use_cpu=True)
    args.gamma_lr_rule = "none"
    opt = build_optimizer(model, args)
    x, y = torch.tensor(case["x"]), torch.tensor(case["y"])
    for _ in range(3):
        opt.zero_grad()
        model(x, labels=y).loss.backward()
        opt.step()
    with torch.no_grad():
        torch.testing.assert_close(model(x).predictions.squeeze(-1), torch.tensor(case["predictions_after_3_steps"]))
