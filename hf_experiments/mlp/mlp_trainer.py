"""`MLPTrainer`: batches that are whole steps (an online stream or the fixed full batch), the
gamma / muP optimizer, and per-step losses fed to the loss checkpoints.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader
from transformers import TrainingArguments

from hf_experiments.core.trainer import ExperimentTrainer

from .batch_functions import OnlineBatches
from .configuration_mlp import gamma_lr
from .loss_checkpoints import LossCheckpointMixin
from .modeling_mlp import MLP

# Optimisers muP supports, and which `mup` wrapper scales their per-layer learning rates.
MUP_SGD_LIKE = ("sgd",)


MUP_ADAM_LIKE = ("adamw_torch", "adamw_torch_fused", "adagrad", "rmsprop")


def build_optimizer(model: MLP, args: TrainingArguments) -> torch.optim.Optimizer:
    """The optimizer of `args.optim` at lr = gamma_lr(learning_rate, gamma); under muP wrapped by `mup.MuSGD`
    (SGD-like) or `mup.MuAdam` (Adam-like), which set each layer's learning rate from its width multiplier."""
    cls, kwargs = ExperimentTrainer.get_optimizer_cls_and_kwargs(args, model)
    kwargs = {**kwargs, "lr": gamma_lr(args.learning_rate, model.config.gamma)}
    weights = [p for n, p in model.named_parameters() if p.requires_grad and not n.endswith("bias")]
    biases = [p for n, p in model.named_parameters() if p.requires_grad and n.endswith("bias")]
    groups = [{"params": weights, "weight_decay": args.weight_decay}]
    if biases:
        groups.append({"params": biases, "weight_decay": 0.0})
    if model.config.parameterization != "mup":
        return cls(groups, **kwargs)
    from mup import MuAdam, MuSGD

    model.set_mup_base_shapes()  # `from_pretrained` / device moves may have dropped the `infshape` attributes
    optim = str(getattr(args.optim, "value", args.optim))
    wrapper = MuSGD if optim in MUP_SGD_LIKE else MuAdam
    return wrapper(groups, impl=cls, **kwargs)


class MLPTrainer(LossCheckpointMixin, ExperimentTrainer):
    """`ExperimentTrainer` whose batches are whole steps (online stream or the fixed full batch), with the
    gamma / muP optimizer and per-step losses fed to the loss checkpoints."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if isinstance(self.train_dataset, OnlineBatches):
            self.train_dataset.start_step = lambda: self.state.global_step
            # The stream starts at the resumed step itself; the Trainer must not skip batches on top of that.
            self.args.ignore_data_skip = True

    def get_train_dataloader(self) -> DataLoader:
        if not isinstance(self.train_dataset, OnlineBatches):
            return super().get_train_dataloader()
        return DataLoader(self.train_dataset, batch_size=None, num_workers=0)  # items already are batches

    def create_optimizer(self, model: Any = None) -> torch.optim.Optimizer:
        if self.optimizer is None:
            self.optimizer = build_optimizer(self.accelerator.unwrap_model(model or self.model), self.args)
        return self.optimizer
