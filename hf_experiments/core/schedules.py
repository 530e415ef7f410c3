"""The seed framework's step schedule (`lr_sched.type step`), built from torch's own schedulers: a linear warm-up
(`LinearLR`) chained with the milestone decay (`MultiStepLR`); transformers has no multi-step schedule."""

from __future__ import annotations

from typing import Any

import torch
from torch.optim.lr_scheduler import ChainedScheduler, LinearLR, MultiStepLR


class StepSchedule(ChainedScheduler):
    """`ChainedScheduler` that also resumes from a checkpoint whose `scheduler.pt` was written by the `LambdaLR`
    of earlier releases (same rates; the learning rate itself comes back with the optimizer's state)."""

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "_schedulers" in state_dict:
            super().load_state_dict(state_dict)
            return
        for part in self._schedulers:  # a LambdaLR state: how many steps were taken is all the parts need
            part.last_epoch, part._step_count = state_dict["last_epoch"], state_dict["_step_count"]
            part._last_lr = list(state_dict["_last_lr"])
        self._last_lr = list(state_dict["_last_lr"])


def step_schedule(
    optimizer: torch.optim.Optimizer, milestones: list[int], gamma: float, warmup_steps: int
) -> StepSchedule:
    """The learning rate of step `s` (0-based) is `lr * min(1, (s + 1) / warmup_steps) * gamma ** #{m <= s}`.

    Both parts count from step 0, so a milestone inside the warm-up applies at once (as in the original)."""
    parts: list[Any] = []
    if warmup_steps > 1:
        parts.append(LinearLR(optimizer, start_factor=1.0 / warmup_steps, end_factor=1.0, total_iters=warmup_steps - 1))
    parts.append(MultiStepLR(optimizer, milestones=sorted(milestones), gamma=gamma))
    return StepSchedule(parts, optimizer=optimizer)
