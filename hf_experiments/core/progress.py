"""Progress bars for our own long loops (final generation evaluations, data-cache rounds, data generation,
sweeps), in the `Trainer`'s style: `tqdm.auto` with ``dynamic_ncols``, shown where the Trainer's bars are shown.

A bar is off on every rank but the main one (the Trainer draws its bars on world process zero only), when
``disable_tqdm`` is set in the `TrainingArguments` passed, and when the Hugging Face progress bars are switched off
(`transformers.utils.logging.disable_progress_bar()` or ``HF_HUB_DISABLE_PROGRESS_BARS=1``). Otherwise tqdm
decides as it does for the Trainer's bars (``TQDM_*`` environment variables apply); a bar that is off is a real
`tqdm` with ``disable=True``, so ``update``, ``write`` and ``set_postfix_str`` always work.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm


def is_main_process(args: Any = None) -> bool:
    """Rank 0 of the launch: from ``args.process_index`` (TrainingArguments) when given, else from
    ``torch.distributed`` once initialised, else from the launcher's ``RANK`` variable (torchrun, accelerate)."""
    if args is not None and getattr(args, "process_index", None) is not None:
        return int(args.process_index) == 0
    if "torch" in sys.modules:  # a generator without torch is one process (its launcher's RANK says otherwise)
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank() == 0
    return os.environ.get("RANK", "0") in ("", "0")


def bars_enabled(args: Any = None, disable: bool = False) -> bool:
    """Whether a bar would be drawn here (see the module docstring)."""
    if disable or (args is not None and getattr(args, "disable_tqdm", False)):
        return False
    if "transformers" in sys.modules:  # transformers' switch (`disable_progress_bars`), where it is loaded
        from transformers.utils import logging as hf_logging

        if not hf_logging.is_progress_bar_enabled():
            return False
    return is_main_process(args)


def progress_bar(
    iterable: Iterable | None = None,
    *,
    desc: str,
    total: float | None = None,
    unit: str = "it",
    args: Any = None,
    disable: bool = False,
    **kwargs: Any,
) -> tqdm:
    """A `tqdm` bar named ``desc`` (the text a log reader looks for), off where :func:`bars_enabled` says so.

    ``args``: the run's `TrainingArguments` (its ``disable_tqdm`` and ``process_index``); None outside a run
    (data scripts, sweeps), where the rank comes from the launcher's environment.
    """
    kwargs.setdefault("dynamic_ncols", True)
    if not bars_enabled(args, disable):
        kwargs["disable"] = True
    return tqdm(iterable, desc=desc, total=total, unit=unit, **kwargs)


__all__ = ["bars_enabled", "is_main_process", "progress_bar"]
