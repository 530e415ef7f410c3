"""SIGTERM / SIGUSR1 ("you are about to be preempted") from the first line of a run to its last.

Outside the training loop (setup, data generation, the final evaluation and save) nothing is worth finishing
in the grace period: the handler raises `Preempted`, `runner.main` turns it into exit 75 and a rerun redoes that
part (everything written before is atomic or checkpointed). Inside the loop a checkpoint is worth writing: the
`PreemptionCallback` switches the handler to "note it" (`start_deferring`) and checkpoints at the next step boundary.
"""

from __future__ import annotations

import signal
from typing import Any

from transformers.utils import logging

logger = logging.get_logger(__name__)

PREEMPT_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class Preempted(BaseException):
    """Raised by the handler outside training; a BaseException so `except Exception` in user code lets it pass."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"received {signal.Signals(signum).name}")
        self.signum = signum


class _State:
    defer = False
    received: int | None = None


def _handler(signum: int, frame: Any) -> None:
    _State.received = signum
    if _State.defer:
        logger.warning(f"received {signal.Signals(signum).name}: checkpointing at the end of this step")
        return
    raise Preempted(signum)


def install() -> None:
    """Handle the preemption signals in this process from now on (main thread only, as `signal` requires)."""
    _State.received = None
    _State.defer = False
    for sig in PREEMPT_SIGNALS:
        signal.signal(sig, _handler)


def installed() -> bool:
    return all(signal.getsignal(sig) is _handler for sig in PREEMPT_SIGNALS)


def received() -> bool:
    """Whether a preemption signal arrived since `install` (also one noted while deferred)."""
    return _State.received is not None


def check() -> None:
    """Raise `Preempted` if a signal arrived (for a raise that library code caught and dropped)."""
    if _State.received is not None and not _State.defer:
        raise Preempted(_State.received)


def start_deferring() -> bool:
    """From now on a signal is only noted (`received()`), so training can stop at a step boundary; returns the
    previous mode for `stop_deferring`."""
    previous = _State.defer
    _State.defer = True
    return previous


def stop_deferring(previous: bool = False) -> None:
    _State.defer = previous


def any_rank_received() -> bool:
    """`received()` on any rank (every rank must call it): all stop together, as in training."""
    from .ranks import any_rank

    return any_rank(received())
