"""What the `report_to` backends (TensorBoard, W&B, trackio, ...) get beyond the Trainer's own logs: a run's final
metrics, and the run's W&B project, group and tags.

Both go the way transformers' integrations read them, so every backend gets the same:

- the final metrics are one `Trainer.log` call at the last global step (each integration's `on_log`), keyed
  `final/<metric>`; the integrations file every key that is not `eval_` / `test_` under `train/`, so TensorBoard
  and W&B show `train/final/<metric>`. They are also the last entry of `trainer_state.json`'s log history.
- `wandb_project`, `wandb_group` and `run_tags` become the variables `wandb.init` reads (WANDB_PROJECT,
  WANDB_RUN_GROUP, WANDB_TAGS), set for the length of the run only, so other runs of the same process (an
  in-process sweep, a notebook) keep theirs; a run without `run_name` is named after its `exp_name`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from .run_folder import is_headline

if TYPE_CHECKING:
    from transformers import Trainer

    from .config import RunArguments, RunConfig

FINAL_PREFIX = "final/"
# Integrations whose `on_train_end` only closes what their `on_log` reopens after training (a TensorBoard event
# file, a trackio run); W&B's also uploads the model, so its run is finished with `wandb.finish` instead.
_REOPENED_BY_ON_LOG = ("TensorBoardCallback", "TrackioCallback")


def headline_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The scalar final metrics, as numbers (lists, strings and unset values stay in `metrics.json` only)."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if not is_headline(key):
            continue
        if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # 0-d torch / numpy values
            value = value.item()
        if isinstance(value, bool):
            value = float(value)
        if isinstance(value, (int, float)):
            out[key] = value
    return out


def log_final_metrics(trainer: Trainer, metrics: Mapping[str, Any]) -> dict[str, float]:
    """Send the headline final metrics to every `report_to` backend at the last global step (under `final/`),
    then close what logging after training reopened. Returns what was logged (every rank calls this; the
    integrations write on the main process only)."""
    logs = {f"{FINAL_PREFIX}{k}": v for k, v in headline_metrics(metrics).items()}
    if logs:
        trainer.log(dict(logs))
    for callback in trainer.callback_handler.callbacks:
        if type(callback).__name__ in _REOPENED_BY_ON_LOG:
            callback.on_train_end(trainer.args, trainer.state, trainer.control, model=trainer.model)
    return logs


def wandb_env(run: RunArguments) -> dict[str, str]:
    """The W&B variables the run's keys stand for (only the keys that are set: the environment's win otherwise)."""
    env = {}
    if run.wandb_project:
        env["WANDB_PROJECT"] = run.wandb_project
    if run.wandb_group:
        env["WANDB_RUN_GROUP"] = run.wandb_group
    if run.run_tags:
        env["WANDB_TAGS"] = ",".join(run.run_tags)
    return env


def _wandb_run() -> Any:
    wandb = sys.modules.get("wandb")
    return getattr(wandb, "run", None) if wandb is not None else None


@contextmanager
def tracker_settings(cfg: RunConfig) -> Iterator[None]:
    """For the length of a run (trainer built, trained, evaluated, saved): the W&B variables of its keys and a
    `run_name` (default: `exp_name`); afterwards the environment and `run_name` as they were, and a W&B run that
    the run's `WandbCallback` started is finished, so the next run of this process starts its own."""
    env = wandb_env(cfg.run)
    saved = {key: os.environ.get(key) for key in env}
    args = cfg.training
    run_name = args.run_name
    before = _wandb_run()
    os.environ.update(env)
    if run_name is None:
        args.run_name = cfg.run.exp_name
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        args.run_name = run_name
        started = _wandb_run()
        if started is not None and started is not before:
            sys.modules["wandb"].finish()
