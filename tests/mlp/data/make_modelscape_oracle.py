"""Writes `modelscape_oracle.json`: what the original code computes, for `tests/mlp/test_oracle.py` to compare
with. Run outside the repo's environment rules, with the originals on the path (they are not dependencies):

    git clone https://github.com/JoeyTurn/modelscape /tmp/oracle/ms   # at 506d374
    git clone https://github.com/dkarkada/mupify /tmp/oracle/mupify
    pip install --target /tmp/oracle/site einops scipy   # what modelscape.data imports
    PYTHONPATH=/tmp/oracle/site:/tmp/oracle/ms:/tmp/oracle/mupify python tests/mlp/data/make_modelscape_oracle.py

Records (1) Hermite targets: `get_synthetic_X` + `torch.linalg.svd` + `get_new_polynomial_data` for the sum
of He_1(z_0) and He_1(z_1) and for He_2(z_0) He_1(z_2); (2) mupify: a modelscape `MLP` after `mupify` +
`rescale` + `centeredmodel`, its initial weights, and its predictions after 3 SGD steps, for every `param`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from modelscape.data.data import get_new_polynomial_data, get_synthetic_X
from modelscape.data.monomial import Monomial
from modelscape.model import MLP, centeredmodel
from mupify import mupify, rescale

OUT = Path(__file__).with_name("modelscape_oracle.json")
SEED, DIM, N_TOT, N = 7, 8, 2000, 64


def hermite_cases() -> list[dict]:
    x_full, eig = get_synthetic_X(d=DIM, N=N_TOT, offset=3, alpha=1.5, gen=torch.Generator().manual_seed(SEED))
    _, lambdas, vt = torch.linalg.svd(x_full, full_matrices=False)
    cases = []
    for terms, monomials in ((["0", "1"], [Monomial({0: 1}), Monomial({1: 1})]), (["0^2*2"], [Monomial({0: 2, 2: 1})])):
        x, y = get_new_polynomial_data(
            lambdas, vt, monomials, DIM, N, eig, N_TOT, gen=torch.Generator().manual_seed(SEED + 1)
        )
        cases.append({"terms": terms, "x": x.tolist(), "y": torch.as_tensor(y).tolist()})
    return cases


def mupify_cases() -> list[dict]:
    cases = []
    for param in ("mup", "ntp", "mfp", "mup-lr", "ntp-lr"):
        for gamma in (1.0, 0.5):
            torch.manual_seed(0)
            model = MLP(d_in=4, width=16, depth=3, d_out=1)
            opt = torch.optim.SGD(model.parameters(), lr=0.05)
            mupify(model, opt, param=param)
            rescale(model, gamma)
            init = {k: v.tolist() for k, v in model.state_dict().items()}
            net = centeredmodel(model)
            x, y = torch.randn(32, 4), torch.randn(32)
            for _ in range(3):
                opt.zero_grad()
                torch.nn.functional.mse_loss(net(x).squeeze(), y).backward()
                opt.step()
            with torch.no_grad():
                pred = net(x).squeeze()
            cases.append(
                {"param": param, "gamma": gamma, "lr": 0.05, "init": init, "x": x.tolist(), "y": y.tolist(),
                 "predictions_after_3_steps": pred.tolist()}
            )  # fmt: skip
    return cases


if __name__ == "__main__":
    meta = {"seed": SEED, "dim": DIM, "pca_samples": N_TOT, "alpha": 1.5, "offset": 3}
    OUT.write_text(json.dumps({"hermite": {**meta, "cases": hermite_cases()}, "mupify": mupify_cases()}))
    print(f"wrote {OUT}")
