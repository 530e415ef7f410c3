"""Learning-rate schedules that neither torch nor transformers names: the seed framework's step
schedule (linear warm-up, then the rate times `gamma` at each milestone).
"""

from __future__ import annotations

import numpy as np
import torch


def step_schedule(
    optimizer: torch.optim.Optimizer, milestones: list[int], gamma: float, warmup_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up, then the learning rate times `gamma` per milestone passed (the seed's `lr_sched.type
    step`): the learning rate of step `s` (0-based) is `lr * gamma ** #{m in milestones: m <= s}`."""
    marks = np.sort(np.asarray(milestones))

    def factor(step: int) -> float:
        warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
        return warm * gamma ** int(np.searchsorted(marks, step, side="right"))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
