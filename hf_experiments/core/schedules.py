"""The seed framework's step schedule (`lr_sched.type step`), built from torch's own schedulers: a linear warm-up
(`LinearLR`) chained with the milestone decay (`MultiStepLR`); transformers has no multi-step schedule."""

from __future__ import annotations

import torch
from torch.optim.lr_scheduler import ChainedScheduler, LinearLR, LRScheduler, MultiStepLR


def step_schedule(
    optimizer: torch.optim.Optimizer, milestones: list[int], gamma: float, warmup_steps: int
) -> LRScheduler:
    """The learning rate of step `s` (0-based) is `lr * min(1, (s + 1) / warmup_steps) * gamma ** #{m <= s}`.

    Both parts count from step 0, so a milestone inside the warm-up applies at once (as in the original)."""
    decay = MultiStepLR(optimizer, milestones=sorted(milestones), gamma=gamma)
    if warmup_steps <= 1:
        return decay
    warmup = LinearLR(optimizer, start_factor=1.0 / warmup_steps, end_factor=1.0, total_iters=warmup_steps - 1)
    return ChainedScheduler([warmup, decay], optimizer=optimizer)
