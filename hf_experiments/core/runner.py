"""One run, start to finish: `main` parses the config (strict; exit 2 on a bad one, nothing written), takes the
run folder's lock, builds the experiment's data, model and trainer, trains (resuming from the newest intact
checkpoint), evaluates and saves. `trainers/run.py` and `python -m hf_experiments` call it. Exit status 0 done
(or already finished), 2 bad config or run folder busy, 74 disk full, 75 preempted (rerun the same command).
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer
from transformers.utils import logging

from . import signals
from .config import ConfigError, RunConfig
from .launch import write_status
from .parsing import parse_config_strict
from .ranks import from_main_process
from .reporting import log_final_metrics, tracker_settings
from .run_folder import (
    checkpoints,
    is_complete,
    is_disk_full,
    last_good_checkpoint,
    launch_command,
    move_aside,
    scrub_tokenizer_configs,
    write_json_atomic,
    write_model_card,
)
from .run_lock import RunFolderBusy, RunLock

logger = logging.get_logger(__name__)

PREEMPTED_EXIT_CODE = 75  # EX_TEMPFAIL: "try again" — rerunning the same command resumes
DISK_FULL_EXIT_CODE = 74  # EX_IOERR
FINISHED_RECORD = "run-finished.json"
FINISHED = "finished"  # what `prepare_run` returns for a run that already ended with this config
# Keys that say where to start, or that the machine decides (pin memory follows the device; the reporters a
# `report_to: all` resolves to depend on what is installed), or only where the logs go: not part of "the same run".
_IGNORED_FOR_FINISHED = (
    "fresh_start",
    "restore_from",
    "dataloader_pin_memory",
    "report_to",
    "run_name",
    "wandb_project",
    "wandb_group",
    "run_tags",
    "gpu",
    "torch_threads",
)


def _config_key(cfg: RunConfig) -> dict[str, Any]:
    """What makes a rerun "the same run": the resolved config, less the keys that only say where to start."""
    d = cfg.to_dict()
    return {k: v for k, v in d.items() if k not in _IGNORED_FOR_FINISHED}


def is_finished(cfg: RunConfig) -> bool:
    """Whether the run folder holds a finished run of exactly this config (its final model and metrics)."""
    try:
        record = json.loads((cfg.run_dir / FINISHED_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not ((cfg.run_dir / "metrics.json").is_file() and (cfg.run_dir / "model").is_dir()):
        return False
    now = json.loads(json.dumps(_config_key(cfg), default=str))
    then = {k: v for k, v in (record.get("config") or {}).items() if k not in _IGNORED_FOR_FINISHED}
    if now != then:
        changed = sorted(k for k in set(now) | set(then) if now.get(k) != then.get(k))
        logger.warning(
            f"{cfg.run_dir} finished with another config ({', '.join(changed[:5])} differ): resuming it with this "
            "one (a checkpoint at the end only re-evaluates; `--fresh_start true` keeps the finished run aside)"
        )
        return False
    return True


def prepare_run(cfg: RunConfig, lock: RunLock | None = None) -> str | None:
    """Decide where training starts and record the resolved config; returns the checkpoint to resume from,
    or `FINISHED` when the folder already holds this run finished (then nothing is written).

    Rerunning a command resumes from the newest intact complete checkpoint (a damaged one is reported and set
    aside); `fresh_start` moves the old folder aside first; `restore_from` names a checkpoint explicitly. A
    `restore_from` outside the run folder is applied once: when the run folder already has a complete checkpoint
    (an earlier attempt of the same command restored and trained), rerunning resumes that one, so a restored run
    is never set back. Only the main process touches the disk; it takes `lock` (the folder's `RunLock`) first.
    """

    def decide() -> str | None:
        if lock is not None:
            lock.acquire()
        if cfg.run.fresh_start:
            move_aside(cfg.run_dir)
        elif is_finished(cfg):
            return FINISHED
        cfg.run_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(cfg.run_dir / "run_config.json", cfg.to_dict())
        last = last_good_checkpoint(cfg.run_dir, quarantine=True)
        if cfg.run.restore_from:
            if last is not None and not is_within(cfg.run.restore_from, cfg.run_dir):
                logger.warning(
                    f"restore_from={cfg.run.restore_from} was applied by an earlier attempt: "
                    f"resuming this run's own {last}"
                )
                return str(last)
            if not is_complete(cfg.run.restore_from):
                logger.warning(f"{cfg.run.restore_from} has no completion marker; restoring from it anyway")
            return cfg.run.restore_from
        if last is not None:
            logger.warning(f"resuming from {last}")
        return str(last) if last else None

    if cfg.run.multi_gpu and cfg.training.world_size == 1:
        logger.warning(
            "multi_gpu=true but one process runs: start with `accelerate launch --multi_gpu "
            "--num_processes N trainers/run.py ...`"
        )
    return from_main_process(cfg.training.process_index == 0, decide)


def is_within(path: str | os.PathLike, folder: str | os.PathLike) -> bool:
    """Whether `path` lies inside `folder` (after resolving links and `..`)."""
    return Path(folder).resolve() in Path(path).resolve().parents


def finish(cfg: RunConfig, trainer: Trainer, tokenizer: Any, metrics: dict[str, Any], experiment: Any = None) -> Path:
    """Save the final model with tokenizer and model card, and `metrics.json`, into the run folder; the
    finished record last, so a run counts as finished only once all of it is on disk."""
    model_dir = cfg.run_dir / "model"
    trainer.save_model(str(model_dir))
    trainer.save_state()  # `trainer_state.json` with the whole log, the final training summary included
    if trainer.args.should_save:
        if tokenizer is not None:
            tokenizer.save_pretrained(str(model_dir))
        note = experiment.complete_model_dir(model_dir) if experiment is not None else None
        scrub_tokenizer_configs(model_dir)  # no `local_files_only` / token of this machine in a pushable folder
        clean = {k: (v.item() if isinstance(v, torch.Tensor) else v) for k, v in metrics.items()}
        command = launch_command(cfg.config_path)  # None when run in-process (a sweep, a test)
        write_model_card(model_dir, cfg.run.experiment, cfg.to_dict(), clean, note, command=command)
        write_json_atomic(cfg.run_dir / "metrics.json", clean)
        # the config as parsed (`prepare_run` wrote it), not as the trainer left it (e.g. the mlp trainer sets
        # ignore_data_skip): what a rerun's parse is compared with
        parsed = json.loads((cfg.run_dir / "run_config.json").read_text(encoding="utf-8"))
        parsed = {k: v for k, v in parsed.items() if k not in _IGNORED_FOR_FINISHED}
        write_json_atomic(cfg.run_dir / FINISHED_RECORD, {"global_step": trainer.state.global_step, "config": parsed})
    return model_dir


def on_preempted(cfg: RunConfig | None) -> int:
    """After a preemption (checkpoint written, or setup/evaluation cut short): requeue under SLURM if asked, and
    return the exit code."""
    if cfg is None:
        print("preempted during setup: rerun the same command", file=sys.stderr)
        return PREEMPTED_EXIT_CODE
    job = os.environ.get("SLURM_JOB_ID")
    if job and cfg.run.requeue_on_preempt and cfg.training.process_index == 0 and shutil.which("scontrol"):
        subprocess.run(["scontrol", "requeue", job], check=False)
    logger.warning(f"preempted: {cfg.run_dir} keeps its last complete checkpoint; rerun the same command to resume")
    return PREEMPTED_EXIT_CODE


def disk_full(cfg: RunConfig | None, exc: BaseException) -> int:
    """One line naming where the write failed and the checkpoint a rerun (after freeing space) resumes from."""
    where = getattr(exc, "filename", None) or (cfg.run_dir if cfg else "the run folder")
    cause = exc.__cause__ or exc
    error = f" ({type(cause).__name__}: {' '.join(str(cause).split())[:120]})"
    if cfg is not None:
        last = next((c for c in reversed(checkpoints(cfg.run_dir)) if is_complete(c)), None)
        resume = f"last complete checkpoint: {last}" if last else "no complete checkpoint yet"
        print(
            f"disk full while writing {where}{error} (run folder {cfg.run_dir}); {resume}; "
            "free space and rerun the same command",
            file=sys.stderr,
        )
    else:
        print(f"disk full while writing {where}{error}", file=sys.stderr)
    return DISK_FULL_EXIT_CODE


def die_with_parent() -> None:
    """Under a launcher (torchrun / `accelerate launch`), a rank whose launcher is killed gets SIGTERM (it then
    checkpoints and stops) instead of training on as an orphan. Linux only; elsewhere a no-op."""
    if "LOCAL_RANK" not in os.environ or not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        return
    if os.getppid() != parent:  # the launcher died before the call (a container's PID-1 launcher is fine)
        os.kill(os.getpid(), signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    """parse -> data -> model -> trainer -> train -> evaluate -> save; returns the exit status (also written for
    the launch wrapper, `core.launch`, when it started this process)."""
    argv = sys.argv[1:] if argv is None else argv
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.getsignal(sig) for sig in signals.PREEMPT_SIGNALS}
        signals.install()
    code = 1  # an exception (its traceback printed) leaves 1
    lock: list[RunLock] = []
    try:
        code = _main(argv, lock)
        return code
    finally:
        signals.start_deferring()  # a signal now must not cut the cleanup short: the run is over either way
        if lock:
            lock[0].release()
        write_status(code)
        for sig, handler in previous.items():  # in-process callers (sweeps, notebooks) get theirs back
            if handler is not None:
                signal.signal(sig, handler)
        signals.stop_deferring()


def _main(argv: list[str], lock: list[RunLock]) -> int:
    cfg: RunConfig | None = None
    try:
        die_with_parent()
        try:
            cfg = parse_config_strict(argv, select_gpu=True)
        except ConfigError as e:
            print(f"config error: {e}", file=sys.stderr)
            return 2
        if cfg.training.process_index == 0:
            lock.append(RunLock(cfg.run_dir))
        return _run(cfg, lock[0] if lock else None)
    except ConfigError as e:  # found while building data (a dataset that does not fit the config): still exit 2
        if cfg is None or cfg.training.process_index == 0:
            print(f"config error: {e}", file=sys.stderr)
        return 2
    except signals.Preempted:
        return on_preempted(cfg)
    except RunFolderBusy as e:
        if cfg is None or cfg.training.process_index == 0:
            print(f"run folder busy: {e}; wait for it to end or choose another exp_name", file=sys.stderr)
        return 2
    except Exception as e:
        if is_disk_full(e, cfg.run_dir if cfg is not None else None):
            return disk_full(cfg, e)
        raise


def _run(cfg: RunConfig, lock: RunLock | None) -> int:
    experiment = cfg.experiment_cls(cfg)
    resume_from = prepare_run(cfg, lock)
    if resume_from == FINISHED:
        if cfg.training.process_index == 0:
            print(f"{cfg.run_dir} is finished (same config): nothing to do; `--fresh_start true` trains it again")
        return 0

    signals.check()  # each phase of setup: a `Preempted` swallowed by library code is acted on here
    data = experiment.build_data()
    signals.check()
    model = experiment.build_model()
    signals.check()
    with tracker_settings(cfg):  # W&B project / group / tags for this run only
        trainer = experiment.build_trainer(model, data)
        signals.check()
        trainer.train(resume_from_checkpoint=resume_from)
        if trainer.preempted or signals.any_rank_received():
            return on_preempted(cfg)

        metrics = {**experiment.evaluate(trainer, data), "world_size": trainer.args.world_size}
        log_final_metrics(trainer, metrics)  # to every report_to backend, under final/
        model_dir = finish(cfg, trainer, experiment.tokenizer, metrics, experiment)
    if trainer.is_world_process_zero():
        print(f"final metrics: {metrics}\nrun folder: {cfg.run_dir}  (model: {model_dir})")
    return 0
