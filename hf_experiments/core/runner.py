"""One run, start to finish: `main` parses the config (strict; exit 2 on a bad one, nothing written), builds the
experiment's data, model and trainer, trains (resuming from the run folder's last complete checkpoint), evaluates
and saves. `trainers/run.py` and `python -m hf_experiments` call it. Exit status 0 done, 2 bad config, 75
preempted (rerun the same command to continue)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer
from transformers.utils import logging

from .config import RunConfig
from .parsing import parse_config
from .registry import available_experiments
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
        logger.warning(
            "multi_gpu=true but one process runs: start with `accelerate launch --multi_gpu "
            "--num_processes N trainers/run.py ...`"
        )
    last = last_complete_checkpoint(cfg.run_dir)
    if cfg.run.restore_from:
        if last is not None and not is_within(cfg.run.restore_from, cfg.run_dir):
            logger.warning(
                f"restore_from={cfg.run.restore_from} was applied by an earlier attempt: resuming this run's own {last}"
            )
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


def main(argv: list[str] | None = None) -> int:
    """parse -> data -> model -> trainer -> train -> evaluate -> save; returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    if "--list" in argv:
        print("\n".join(available_experiments()))
        return 0
    cfg = parse_config(argv)
    experiment = cfg.experiment_cls(cfg)
    resume_from = prepare_run(cfg)

    data = experiment.build_data()
    model = experiment.build_model()
    trainer = experiment.build_trainer(model, data)
    trainer.train(resume_from_checkpoint=resume_from)
    if trainer.preempted:
        return on_preempted(cfg)

    metrics = {**experiment.evaluate(trainer, data), "world_size": trainer.args.world_size}
    model_dir = finish(cfg, trainer, experiment.tokenizer, metrics)
    if trainer.is_world_process_zero():
        print(f"final metrics: {metrics}\nrun folder: {cfg.run_dir}  (model: {model_dir})")
    return 0
