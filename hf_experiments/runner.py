"""The steps `trainers/run.py` takes around `Trainer.train()`: pick the checkpoint to resume, record the
resolved config, and after training write the final model, model card and `metrics.json`."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, Trainer
from transformers.utils import logging

from .config import RunConfig
from .run_folder import is_complete, last_complete_checkpoint, move_aside, write_json_atomic, write_model_card

logger = logging.get_logger(__name__)

PREEMPTED_EXIT_CODE = 75  # EX_TEMPFAIL: "try again" — rerunning the same command resumes


def prepare_run(cfg: RunConfig) -> str | None:
    """Decide where training starts and record the resolved config; returns the checkpoint to resume from.

    Rerunning a command resumes from the last complete checkpoint; `fresh_start` moves the old folder aside
    first; `restore_from` names a checkpoint explicitly. A `restore_from` outside the run folder is applied
    once: when the run folder already has a complete checkpoint (an earlier attempt of the same command
    restored and trained), rerunning resumes that one, so a restored run is never set back. Only the main
    process touches the disk.
    """
    args = cfg.training
    with args.main_process_first(desc="prepare run folder"):
        if args.process_index == 0:
            if cfg.run.fresh_start:
                move_aside(cfg.run_dir)
            cfg.run_dir.mkdir(parents=True, exist_ok=True)
            write_json_atomic(cfg.run_dir / "run_config.json", cfg.to_dict())
    if cfg.run.multi_gpu and args.world_size == 1:
        logger.warning("multi_gpu=true but one process runs: start with `accelerate launch --multi_gpu "
                       "--num_processes N trainers/run.py ...`")
    last = last_complete_checkpoint(cfg.run_dir)
    if cfg.run.restore_from:
        if last is not None and not is_within(cfg.run.restore_from, cfg.run_dir):
            logger.warning(f"restore_from={cfg.run.restore_from} was applied by an earlier attempt: resuming "
                           f"this run's own {last}")
            return str(last)
        if not is_complete(cfg.run.restore_from):
            logger.warning(f"{cfg.run.restore_from} has no completion marker; restoring from it anyway")
        return cfg.run.restore_from
    if last is not None:
        logger.warning(f"resuming from {last}")
    return str(last) if last else None


def is_within(path: str | os.PathLike, folder: str | os.PathLike) -> bool:
    """Whether `path` lies inside `folder` (after resolving links and `..`)."""
    return Path(folder).resolve() in Path(path).resolve().parents


def load_init_weights(model: PreTrainedModel, path: str) -> None:
    """`init_checkpt`: copy weights (only) from a checkpoint or saved-model folder into `model`."""
    from transformers.trainer_utils import load_sharded_checkpoint

    path = Path(path)
    if (path / "model.safetensors").is_file():
        from safetensors.torch import load_file

        state = load_file(str(path / "model.safetensors"))
        missing, unexpected = model.load_state_dict(state, strict=False)
    else:
        missing, unexpected = load_sharded_checkpoint(model, str(path), strict=False)
    if unexpected:
        raise ValueError(f"init_checkpt={str(path)!r}: weights do not fit this model (unexpected: {unexpected[:5]})")
    logger.warning(f"init_checkpt: loaded weights from {path} ({len(missing)} tensors kept at initialisation)")


def finish(cfg: RunConfig, trainer: Trainer, tokenizer: Any, metrics: dict[str, Any]) -> Path:
    """Save the final model with tokenizer and model card, and `metrics.json`, into the run folder."""
    model_dir = cfg.run_dir / "model"
    trainer.save_model(str(model_dir))
    if trainer.args.should_save:
        if tokenizer is not None:
            tokenizer.save_pretrained(str(model_dir))
        clean = {k: (v.item() if isinstance(v, torch.Tensor) else v) for k, v in metrics.items()}
        write_model_card(model_dir, cfg.run.experiment, cfg.to_dict(), clean)
        write_json_atomic(cfg.run_dir / "metrics.json", clean)
    return model_dir


def on_preempted(cfg: RunConfig) -> int:
    """After a preemption checkpoint: requeue under SLURM if asked, and return the exit code."""
    job = os.environ.get("SLURM_JOB_ID")
    if job and cfg.run.requeue_on_preempt and cfg.training.process_index == 0 and shutil.which("scontrol"):
        subprocess.run(["scontrol", "requeue", job], check=False)
    logger.warning(f"preempted: checkpoint written to {cfg.run_dir}; rerun the same command to resume")
    return PREEMPTED_EXIT_CODE
