"""`MLPTrainer`: batches that are whole steps (an online stream or the fixed full batch), the
gamma / muP / mupify optimizer, the configured loss, and per-step losses fed to the loss checkpoints.
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
from .modeling_mlp import MupifyLinear
from .objectives import apply_loss, json_object, resolve_loss, resolve_optimizer

# Optimisers muP supports, and which `mup` wrapper scales their per-layer learning rates.
MUP_SGD_LIKE = ("sgd",)


MUP_ADAM_LIKE = ("adamw_torch", "adamw_torch_fused", "adagrad", "rmsprop")


def learning_rate(args: TrainingArguments, gamma: float) -> float:
    """The base learning rate: `learning_rate`, times the README's gamma rule when `gamma_lr_rule="readme"`."""
    rule = getattr(args, "gamma_lr_rule", "readme")  # plain TrainingArguments (tests): the rule of old
    return gamma_lr(args.learning_rate, gamma) if rule == "readme" else args.learning_rate


def build_optimizer(model: torch.nn.Module, args: TrainingArguments) -> torch.optim.Optimizer:
    """The optimizer of `args.optimizer` (a torch class) or `args.optim` (the Trainer's names) at the base
    learning rate; under muP wrapped by `mup.MuSGD` (SGD-like) or `mup.MuAdam` (Adam-like), which set each
    layer's learning rate from its width multiplier; under mupify each layer's group gets lr times its
    mupify learning-rate multiplier."""
    config = getattr(model, "config", None)
    lr = learning_rate(args, float(getattr(config, "gamma", 1.0)))
    spec = getattr(args, "optimizer", None)
    if spec:
        cls, kwargs = resolve_optimizer(spec), {**json_object("optimizer_kwargs", args.optimizer_kwargs)}
        kwargs.setdefault("lr", lr)
    else:
        cls, kwargs = ExperimentTrainer.get_optimizer_cls_and_kwargs(args, model)
        kwargs = {**kwargs, "lr": lr}
    # Weights, then biases (no weight decay), as before; under mupify one such pair per lr multiplier.
    keyed: dict[tuple[float, bool], list[torch.nn.Parameter]] = {}
    seen: set[int] = set()  # a parameter shared by two modules goes into one group
    for module in model.modules():
        mult = module.lr_multiplier if isinstance(module, MupifyLinear) else 1.0
        for name, p in module.named_parameters(recurse=False):
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                keyed.setdefault((mult, name.endswith("bias")), []).append(p)
    groups = []
    for (mult, is_bias), params in sorted(keyed.items(), key=lambda kv: kv[0][1]):
        group = {"params": params, "weight_decay": 0.0 if is_bias else args.weight_decay}
        if mult != 1.0:
            group["lr"] = kwargs["lr"] * mult
        groups.append(group)
    if getattr(config, "parameterization", "standard") != "mup":
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
        # The configured loss, resolved once; None: MSE, the model's own loss.
        spec = getattr(self.args, "loss", "MSELoss")
        loss_kwargs = json_object("loss_kwargs", getattr(self.args, "loss_kwargs", None))
        self._loss_fn = None if spec == "MSELoss" and not loss_kwargs else resolve_loss(spec, loss_kwargs)
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

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The configured loss on the model's predictions; MSE (the default) is the model's own loss."""
        if self._loss_fn is None:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        outputs = model(x=inputs["x"])
        loss = apply_loss(self._loss_fn, outputs.predictions, inputs["labels"])
        outputs.loss = loss
        return (loss, outputs) if return_outputs else loss
