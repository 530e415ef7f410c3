"""Experiment name -> the module and class that implement it, as an explicit table (like transformers'
`CONFIG_MAPPING_NAMES`): an experiment's code is imported only when a run asks for it, and the framework
(`core`, `sweeps`) names experiments nowhere else.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .config import ConfigError

if TYPE_CHECKING:
    from .experiment import Experiment

# name -> "module:Class". Adding an experiment is adding its package and one line here.
EXPERIMENTS: dict[str, str] = {
    "arrows": "hf_experiments.arrows.experiment:ArrowsExperiment",
    "blotch": "hf_experiments.blotch.experiment:BlotchExperiment",
    "cmp": "hf_experiments.compression.experiment:CompressionExperiment",
    "gru_intervention": "hf_experiments.recurrent.experiment:InterventionExperiment",
    "gru_repeat": "hf_experiments.recurrent.experiment:RepeatExperiment",
    "mlp": "hf_experiments.mlp.experiment:MLPExperiment",
}


def available_experiments() -> list[str]:
    return sorted(EXPERIMENTS)


def get_experiment(name: str) -> type[Experiment]:
    """The experiment class registered under `name` (its module is imported now)."""
    if name not in EXPERIMENTS:
        raise ConfigError("experiment", name, "one of " + ", ".join(sorted(EXPERIMENTS)))
    module, _, cls = EXPERIMENTS[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def describe_experiment(name: str) -> str:
    """The one-line description of an experiment: the first line of its class docstring."""
    doc = (get_experiment(name).__doc__ or "").strip()
    return doc.splitlines()[0] if doc else ""
