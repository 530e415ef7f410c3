# %% [markdown]
# # muP width sweep from Python (`mup_width_sweep.py` and `mup_width_sweep.ipynb` hold the same code)
#
# modelscape's way of working: the batch function and the grabs are plain functions defined right here, the
# hyperparameters a dict, the grid a dict of iterators. `run_sweep` runs every job in this process (so the
# functions need no module of their own), skips jobs that already finished, and returns the results table.
# Run it as a script (`python docs/examples/mup_width_sweep.py`) or cell by cell; `HFE_EXAMPLE_OUT` picks
# the output folder (default `outputs/`).

# %%
import json
import os

import numpy as np

from hf_experiments.sweeps import load_grabs, run_sweep

OUT = os.environ.get("HFE_EXAMPLE_OUT", "outputs")


# %% [markdown]
# A batch function: `n` fresh samples from `rng` (numpy), returning `(X, y)`. Here inputs with a power-law
# covariance and the target (z0 + z1) / 2 of the whitened first two coordinates. Any argument it names (`dim`
# below) comes from the config or from the iterators.


# %%
def powerlaw_batch(n, rng, dim=16, alpha=1.5):
    lam = (3.0 + np.arange(dim)) ** -alpha
    lam /= lam.sum()
    z = rng.standard_normal((n, dim))
    return z * np.sqrt(lam), (z[:, 0] + z[:, 1]) / 2


# A grab: evaluated during training with the keyword arguments it names (the network, the data, the config).
def readout_norm(model, **kwargs):
    return float(model.output_layer.weight.norm())


# %% [markdown]
# The hyperparameters (our names for modelscape's `LR`, `MAX_ITER`, `N_SAMPLES`, `LOSS_CHECKPOINTS`, ...) and
# the grid: parameterisation x width x trial. One learning rate for every width; the loss checkpoints are
# fractions of the initial loss (with centering, the default, the initial loss is the same at every width).

# %%
config = {
    "experiment": "mlp",
    "exp_name": "mup_width_sweep",
    "save_root": OUT,
    "depth": 2,
    "mup_base_width": 64,
    "n_samples": 256,
    "n_test": 1024,
    "dim": 16,
    "learning_rate": 0.5,
    "max_steps": 300,
    "loss_checkpoints": [0.5, 0.3],
    "loss_checkpoints_relative": True,
    "ema_smoother": 0.9,
    "sweep_seed": "fixed",
    "logging_steps": 100,
    "save_steps": 1000,
    "report_to": "none",
    "disable_tqdm": True,
}
iterators = {"parameterization": ["mup", "standard"], "width": [64, 256, 1024], "trial": range(5)}

sweep, table = run_sweep(config, iterators=iterators, batch_fn=powerlaw_batch, grabs={"readout_norm": readout_norm})

# %% [markdown]
# Steps to reach 50% and 30% of the initial loss, mean over trials (NaN: not reached in 300 steps). Under muP
# they stay flat across widths; under the standard parameterisation the same learning rate slows the widest
# network down.

# %%
steps = [c for c in table.columns if c.startswith("step_to_rel_loss_")]
summary = table.groupby(["parameterization", "width"])[[*steps, "eval_loss"]].mean()
print(summary.round(3).to_string())


def spread(parameterization, column):
    """Largest over smallest mean steps across widths (inf if a width never reached the threshold)."""
    means = summary.loc[parameterization, column]
    return float(means.max() / means.min()) if means.notna().all() else float("inf")


result = {p: {c: spread(p, c) for c in steps} for p in ("mup", "standard")}
result["readout_norm_final"] = {job: recs["readout_norm"][-1]["value"] for job, recs in load_grabs(sweep).items()}
print("SUMMARY " + json.dumps(result))
