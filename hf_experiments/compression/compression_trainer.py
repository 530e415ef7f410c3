"""`CompressionTrainer`: identical to `ExperimentTrainer` except that it logs the parts of the combined loss.

The compression model returns its combined loss plus `fwd_loss`, `rmb_loss` and `kl_loss`; the Trainer only
logs `loss`. We average the parts over the logging interval (like the Trainer does for `loss`) so TensorBoard
shows which objective moves.
"""

from __future__ import annotations

from typing import Any

import torch

from hf_experiments.core.trainer import ExperimentTrainer

LOSS_PARTS = ("fwd_loss", "rmb_loss", "kl_loss")


class CompressionTrainer(ExperimentTrainer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._parts: dict[str, list[float]] = {k: [] for k in LOSS_PARTS}

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        if model.training:
            for k in LOSS_PARTS:
                v = outputs.get(k) if hasattr(outputs, "get") else None
                if isinstance(v, torch.Tensor):
                    self._parts[k].append(v.detach().float().item())
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        if "loss" in logs:  # a training log: add the mean of each part since the last one
            for k, vals in self._parts.items():
                if vals:
                    logs[k] = round(sum(vals) / len(vals), 4)
                    vals.clear()
        super().log(logs, *args, **kwargs)
