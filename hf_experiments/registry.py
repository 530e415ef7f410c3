"""Experiments as small registered units.

An experiment is one file under `hf_experiments/experiments/` defining a subclass of `Experiment` decorated
with `@register`. It says how its data, model, trainer and metrics are built; `trainers/run.py` only calls
these methods in order, so adding an experiment never touches the runner.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from .config import ConfigError, ExperimentTrainingArguments

if TYPE_CHECKING:
    from datasets import DatasetDict
    from transformers import PreTrainedModel, Trainer

    from .config import RunConfig

_REGISTRY: dict[str, type[Experiment]] = {}


@dataclass
class NoArguments:
    """Placeholder for an experiment without model or data options."""


class Experiment:
    """Base class of a registered experiment. Subclasses set `name`, `model_args` and `data_args`."""

    name: ClassVar[str]
    model_args: ClassVar[type] = NoArguments
    data_args: ClassVar[type] = NoArguments
    training_args: ClassVar[type] = ExperimentTrainingArguments

    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg
        self.tokenizer: Any = None

    @classmethod
    def validate(cls, cfg: RunConfig) -> None:
        """Reject bad combinations up front (raise `ConfigError`); runs before anything touches the disk."""

    def build_data(self) -> DatasetDict:
        raise NotImplementedError

    def build_model(self) -> PreTrainedModel:
        raise NotImplementedError

    def build_trainer(self, model: PreTrainedModel, data: DatasetDict) -> Trainer:
        raise NotImplementedError

    def evaluate(self, trainer: Trainer, data: DatasetDict) -> dict[str, float]:
        """Final evaluation; may also write plots into the run folder (main process only)."""
        return trainer.evaluate()


def register(cls: type[Experiment]) -> type[Experiment]:
    """Class decorator adding an experiment to the registry under `cls.name`."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"experiment name {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def _import_all() -> None:
    from . import experiments

    for mod in pkgutil.iter_modules(experiments.__path__):
        importlib.import_module(f"{experiments.__name__}.{mod.name}")


def available_experiments() -> list[str]:
    _import_all()
    return sorted(_REGISTRY)


def get_experiment(name: str) -> type[Experiment]:
    _import_all()
    if name not in _REGISTRY:
        raise ConfigError("experiment", name, "one of " + ", ".join(sorted(_REGISTRY)))
    return _REGISTRY[name]
