"""The base class of an experiment: its argument dataclasses and how its data, model, trainer and
final metrics are built. `core.runner.main` calls these in order for every experiment.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from .config import ExperimentTrainingArguments

if TYPE_CHECKING:
    from datasets import DatasetDict
    from transformers import PreTrainedModel, Trainer

    from .config import RunConfig


@dataclass
class NoArguments:
    """Placeholder for an experiment without model or data options."""


class Experiment:
    """Base class of an experiment (listed in `core.registry.EXPERIMENTS`). Subclasses set `name`, `model_args`
    and `data_args` (and `training_args` for extra training fields)."""

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

    def complete_model_dir(self, model_dir: Path) -> str | None:
        """Called on the main process after the final model and tokenizer are saved in `model_dir` and before
        its card is written: add what the folder needs to load elsewhere. Returns a line for the model card."""
        return None
