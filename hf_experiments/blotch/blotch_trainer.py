"""`BlotchTrainer`: `ExperimentTrainer` with the original's warm-up / inverse-power schedule and
label smoothing done by the model.
"""

from __future__ import annotations

from functools import partial

from torch.optim.lr_scheduler import LambdaLR

from hf_experiments.core.trainer import ExperimentTrainer
from hf_experiments.core.trainer_internals import mark_scheduler_created


def warmup_inverse_power(step: int, warmup: int, power: float) -> float:
    """LR multiplier: ``step / warmup`` during warm-up, then ``(warmup / step) ** power``.

    Written here because transformers' ``inverse_sqrt`` schedule is this rule for ``power = 0.5`` only, and
    the original takes any power."""
    warmup = max(1, warmup)
    return step / warmup if step < warmup else (warmup / step) ** power


class BlotchTrainer(ExperimentTrainer):
    """``ExperimentTrainer`` with the warm-up/inverse-power schedule when ``lr_decay_power`` is set, and label
    smoothing done by the model (``BlotchConfig.label_smoothing``) instead of the Trainer's smoother, which
    would not shift labels for a model type it does not know."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.label_smoother = None

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        power = getattr(self.args, "lr_decay_power", None)
        if power is None or self.lr_scheduler is not None:
            return super().create_scheduler(num_training_steps, optimizer)
        warmup = self.args.get_warmup_steps(num_training_steps)
        self.lr_scheduler = LambdaLR(
            optimizer or self.optimizer, partial(warmup_inverse_power, warmup=warmup, power=power)
        )
        mark_scheduler_created(self)
        return self.lr_scheduler
