"""The run folder `<save_root>/<exp_name>/`: completing, rotating and choosing checkpoints, atomic small writes.

Layout: `run_config.json` (resolved config), `checkpoint-<step>/` (each with `checkpoint-complete.json` once
every rank has finished writing it), `runs/` (TensorBoard), `model/` (final `save_pretrained` output with
tokenizer and model card), `metrics.json` (final evaluation) and experiment plots.
"""

from __future__ import annotations

import errno
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


def file_records(folder: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Size and SHA-256 of every file under `folder` except the marker, by path relative to it."""
    folder = Path(folder)
    records = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != COMPLETE_MARKER):
        records[path.relative_to(folder).as_posix()] = {"size": path.stat().st_size, "sha256": sha256_of(path)}
    return records


def checkpoint_problem(checkpoint: str | os.PathLike) -> str | None:
    """Why `checkpoint` cannot be resumed from, or None when every file it was completed with is intact.

    A marker from before file records (earlier releases) is trusted as long as `trainer_state.json` exists."""
    ckpt = Path(checkpoint)
    try:
        marker = json.loads((ckpt / COMPLETE_MARKER).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "no completion marker (interrupted while being written)"
    except (OSError, ValueError) as e:
        return f"{COMPLETE_MARKER}: unreadable ({e.__class__.__name__})"
    m = _CKPT_RE.match(ckpt.name)
    if m and marker.get("global_step") not in (None, int(m.group(1))):
        return f"{COMPLETE_MARKER}: global_step {marker.get('global_step')} is not the folder's step {m.group(1)}"
    records = marker.get("files")
    if records is None:
        return None if (ckpt / "trainer_state.json").is_file() else "trainer_state.json: missing"
    for name, want in records.items():
        path = ckpt / name
        if not path.is_file():
            return f"{name}: missing"
        size = path.stat().st_size
        if size != want["size"]:
            return f"{name}: {size} bytes, {want['size']} when completed"
        if sha256_of(path) != want["sha256"]:
            return f"{name}: contents changed since it was completed (SHA-256 differs)"
    return None


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks (`huggingface_hub`'s, the hash the Hub uses for LFS files)."""
    from huggingface_hub.utils.sha import sha_fileobj

    with open(path, "rb") as f:
        return sha_fileobj(f).hex()


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


def last_good_checkpoint(run_dir: str | os.PathLike, quarantine: bool = False) -> Path | None:
    """The newest complete checkpoint whose files are all as they were completed (`checkpoint_problem`).

    A damaged one gets one warning line naming the bad file, and with `quarantine` (the main process, before
    resuming) is moved into `<run_dir>/damaged/` so that it is kept for inspection but never resumed from or
    half-overwritten by the resumed run's save at the same step."""
    for ckpt in reversed(checkpoints(run_dir)):
        if not is_complete(ckpt):
            logger.warning(f"ignoring incomplete checkpoint {ckpt} (interrupted while being written)")
            continue
        problem = checkpoint_problem(ckpt)
        if problem is None:
            return ckpt
        where = ""
        if quarantine:
            target = unique_path(Path(run_dir) / "damaged" / f"{ckpt.name}-{time.strftime('%Y%m%d-%H%M%S')}")
            target.parent.mkdir(exist_ok=True)
            shutil.move(str(ckpt), str(target))
            where = f"; moved to {target}"
        logger.warning(f"damaged checkpoint {ckpt.name}: {problem}; falling back to an older one{where}")
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
    distributed = dist.is_available() and dist.is_initialized()
    if distributed:
        dist.barrier()  # every rank's RNG file and shard is on disk
    if should_save:
        if (ckpt.parent / RUN_CONFIG).is_file():
            shutil.copy2(ckpt.parent / RUN_CONFIG, ckpt / RUN_CONFIG)
        marker = {"global_step": global_step, "time": time.time(), "files": file_records(ckpt)}
        write_json_atomic(ckpt / COMPLETE_MARKER, marker)
        rotate_checkpoints(ckpt.parent, save_total_limit, keep=(ckpt, best))
    if distributed:
        # No rank goes on (and, after a preemption, exits: torchrun then stops the others) before the marker
        # is written: hashing a large checkpoint takes a while.
        dist.barrier()


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


def unique_path(path: Path) -> Path:
    """`path`, or `path-1`, `path-2`, ... : the first that does not exist yet."""
    candidate, n = path, 0
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}-{n}")
    return candidate


def move_aside(run_dir: str | os.PathLike) -> Path | None:
    """Rename an existing run folder to `<name>.old-<time>` (made unique) so a fresh start loses nothing."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        return None
    target = unique_path(run_dir.with_name(f"{run_dir.name}.old-{time.strftime('%Y%m%d-%H%M%S')}"))
    os.rename(run_dir, target)  # same folder: atomic, and never moves `run_dir` *into* an existing target
    logger.warning(f"fresh_start: moved the existing run folder to {target}")
    return target


def write_model_card(
    model_dir: str | os.PathLike, experiment: str, config: dict, metrics: dict, note: str | None = None
) -> None:
    """A README.md model card (`huggingface_hub.ModelCard`): what trained it, with which config, what it scored.

    Only scalar metrics go in its table (per-position lists and the like stay in `metrics.json`); `note` is a
    paragraph from the experiment (e.g. where the backbone comes from)."""
    from huggingface_hub import ModelCard, ModelCardData

    data = ModelCardData(library_name="transformers", tags=["hf_experiments", experiment])
    scalars = {k: v for k, v in metrics.items() if not isinstance(v, (list, tuple, dict))}
    rows = "\n".join(f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in scalars.items())
    card = ModelCard(
        f"---\n{data.to_yaml()}\n---\n\n"
        f"# {config.get('exp_name', experiment)}\n\nTrained with `hf_experiments` (experiment `{experiment}`):\n\n"
        f"```\naccelerate launch trainers/run.py --config run_config.json\n```\n\n"
        + (f"{note}\n\n" if note else "")
        + f"## Final evaluation\n\n| metric | value |\n|---|---|\n{rows}\n\n"
        f"## Config\n\n```json\n{json.dumps(config, indent=2, sort_keys=True, default=str)}\n```\n"
    )
    card.save(Path(model_dir) / "README.md")


def is_disk_full(exc: BaseException, folder: str | os.PathLike | None = None) -> bool:
    """ENOSPC anywhere in the exception's chain, or (torch and safetensors often lose the errno: "iostream
    error") an error while `folder`'s filesystem has under 1 MiB free, as a write that ran out leaves it."""
    seen, e = 0, exc
    while e is not None and seen < 10:
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "No space left on device" in str(e) or "os error 28" in str(e):
            return True
        e, seen = e.__cause__ or e.__context__, seen + 1
    if folder is not None:
        path = Path(folder)
        while not path.exists() and path != path.parent:
            path = path.parent
        try:
            return shutil.disk_usage(path).free < 1 << 20
        except OSError:
            return False
    return False
