"""Agreement between the ranks of a launch (no-ops in a single process): every rank calls these together."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def _distributed() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def any_rank(flag: bool) -> bool:
    """`flag` on any rank: e.g. a signal or a failure that only one rank saw, so all act at the same point."""
    if not _distributed():
        return flag
    import torch
    import torch.distributed as dist

    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    t = torch.tensor([int(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def from_main_process(is_main: bool, fn: Callable[[], T]) -> T:
    """Run `fn` on the main process only and give every rank its result (or raise its exception on all)."""
    result: list[Any] = [None]
    if is_main:
        try:
            result = [("ok", fn())]
        except Exception as e:  # sent to the other ranks, raised on all
            result = [("error", e)]
    if _distributed():
        import torch.distributed as dist

        dist.broadcast_object_list(result, src=0)
    kind, value = result[0]
    if kind == "error":
        raise value
    return value
