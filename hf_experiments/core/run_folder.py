"""The run folder `<save_root>/<exp_name>/`: completing, rotating and choosing checkpoints, atomic small writes.

Layout: `run_config.json` (resolved config), `checkpoint-<step>/` (each with `checkpoint-complete.json` once
every rank has finished writing it), `runs/` (TensorBoard), `model/` (final `save_pretrained` output with
tokenizer and model card), `metrics.json` (final evaluation) and experiment plots.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from transformers.utils import logging

logger = logging.get_logger(__name__)

COMPLETE_MARKER = "checkpoint-complete.json"
RUN_CONFIG = "run_config.json"
_CKPT_RE = re.compile(r"^checkpoint-(\d+)$")


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON to a temp file in the same folder, fsync, then rename over `path` (never half-written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, sort_keys=True, default=str)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def is_complete(checkpoint: str | os.PathLike) -> bool:
    return (Path(checkpoint) / COMPLETE_MARKER).is_file()


def checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """All `checkpoint-<step>` folders, oldest step first (complete or not)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in run_dir.iterdir() if p.is_dir() and (m := _CKPT_RE.match(p.name))]
    return [p for _, p in sorted(found)]


def last_complete_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The newest checkpoint whose every file was written; checkpoints cut short by a crash are skipped."""
    for ckpt in reversed(checkpoints(run_dir)):
        if is_complete(ckpt):
            return ckpt
        logger.warning(f"ignoring incomplete checkpoint {ckpt} (interrupted while being written)")
    return None


def unmark(checkpoint: str | os.PathLike) -> None:
    """A checkpoint about to be (re)written is not complete until marked again."""
    (Path(checkpoint) / COMPLETE_MARKER).unlink(missing_ok=True)


def complete_checkpoint(
    checkpoint: str | os.PathLike,
    global_step: int,
    should_save: bool,
    save_total_limit: int | None,
    best: str | None = None,
) -> None:
    """After every rank wrote its part of `checkpoint`: a barrier, the run's `run_config.json` copied in (so
    `--restore_from <checkpoint>` restores the config too), the completion marker, then the rotation of older
    complete checkpoints. A crash at any moment leaves at least one complete checkpoint."""
    import torch.distributed as dist

    ckpt = Path(checkpoint)
    if dist.is_available() and dist.is_initialized():
        dist.barrier()  # every rank's RNG file and shard is on disk
    if not should_save:
        return
    if (ckpt.parent / RUN_CONFIG).is_file():
        shutil.copy2(ckpt.parent / RUN_CONFIG, ckpt / RUN_CONFIG)
    write_json_atomic(ckpt / COMPLETE_MARKER, {"global_step": global_step, "time": time.time()})
    rotate_checkpoints(ckpt.parent, save_total_limit, keep=(ckpt, best))


def rotate_checkpoints(run_dir: str | os.PathLike, limit: int | None, keep: tuple = ()) -> list[Path]:
    """Delete the oldest *complete* checkpoints beyond `limit`, never one in `keep` (the one just completed, the
    best one). Unlike transformers' rotation, an incomplete folder (a save cut short) neither counts nor is
    protected as "the newest", so it can never push out the last complete checkpoint. Returns what was deleted."""
    if limit is None:
        return []
    kept = {Path(k).resolve() for k in keep if k}
    complete = [c for c in checkpoints(run_dir) if is_complete(c)]
    excess = len(complete) - max(limit, len([c for c in complete if c.resolve() in kept]))
    doomed = [c for c in complete if c.resolve() not in kept][: max(excess, 0)]
    for ckpt in doomed:
        unmark(ckpt)  # an interrupted deletion leaves an incomplete folder, never a damaged "complete" one
        shutil.rmtree(ckpt, ignore_errors=True)
    return doomed


def move_aside(run_dir: str | os.PathLike) -> Path | None:
    """Rename an existing run folder to `<name>.old-<time>` so a fresh start loses nothing."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        return None
    target = run_dir.with_name(f"{run_dir.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
    shutil.move(str(run_dir), str(target))
    logger.warning(f"fresh_start: moved the existing run folder to {target}")
    return target


def write_model_card(model_dir: str | os.PathLike, experiment: str, config: dict, metrics: dict) -> None:
    """A README.md model card (`huggingface_hub.ModelCard`): what trained it, with which config, what it scored."""
    from huggingface_hub import ModelCard, ModelCardData

    data = ModelCardData(library_name="transformers", tags=["hf_experiments", experiment])
    rows = "\n".join(f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in metrics.items())
    card = ModelCard(
        f"---\n{data.to_yaml()}\n---\n\n"
        f"# {config.get('exp_name', experiment)}\n\nTrained with `hf_experiments` (experiment `{experiment}`):\n\n"
        f"```\naccelerate launch trainers/run.py --config run_config.json\n```\n\n"
        f"## Final evaluation\n\n| metric | value |\n|---|---|\n{rows}\n\n"
        f"## Config\n\n```json\n{json.dumps(config, indent=2, sort_keys=True, default=str)}\n```\n"
    )
    card.save(Path(model_dir) / "README.md")
