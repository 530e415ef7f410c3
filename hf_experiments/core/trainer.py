"""`ExperimentTrainer`: the `Trainer` every experiment uses or subclasses.

Identical to `transformers.Trainer` except: a checkpoint counts as complete (and old ones are rotated) only once
every rank has written its part; SIGTERM / SIGUSR1 lead to a checkpoint at the next optimizer-step boundary and a
clean stop; `max_eval_batches` bounds evaluation; the seed framework's `per_device_batch_size`,
`length_bucketed_sampling` and step schedule work for every experiment; on resume the current config's
logging/eval/save intervals apply; `stop_when` ends training at a metric target; each checkpoint carries a copy
of the run's `run_config.json`; and saved configs keep the model's `use_cache` (not the Trainer's training-time False).

Design: `docs/framework.md`, section "`ExperimentTrainer`".
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer
from transformers.utils import logging

from .callbacks import CurrentIntervalsCallback, PreemptionCallback, StopWhenCallback
from .microbatch import MicrobatchingMixin
from .run_folder import default_file_mode
from .schedules import step_schedule
from .step_overhead import cache_package_lookups
from .threads import ThreadChoiceCallback
from .trainer_internals import LoggingWindowCallback, TrainerInternalsMixin, mark_scheduler_created

logger = logging.get_logger(__name__)


class ExperimentTrainer(MicrobatchingMixin, TrainerInternalsMixin, Trainer):
    """`Trainer` with complete-marked checkpoints, preemption handling, bounded evaluation, micro-batching,
    length bucketing and the step schedule (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        model = kwargs.get("model", args[0] if args else None)
        # `Trainer.__init__` sets `config.use_cache = args.use_cache` (False: no KV cache while training); saved
        # configs get the model's own value back (`save_model`), so a model rebuilt from a run's config.json
        # generates with its cache.
        if model is not None and not hasattr(model, "_hfe_use_cache"):  # first Trainer of this model: its own value
            model._hfe_use_cache = getattr(getattr(model, "config", None), "use_cache", True)
        super().__init__(*args, **kwargs)
        cache_package_lookups()
        self._flop_params: tuple[Any, int] | None = None  # (model, its non-embedding parameter count)
        self.preempted = False
        self._preemption = PreemptionCallback(self)
        self.add_callback(self._preemption)
        self.add_callback(CurrentIntervalsCallback())
        self.add_callback(LoggingWindowCallback(self))
        self.add_callback(ThreadChoiceCallback(getattr(self.args, "torch_threads", "auto"), self.args.output_dir))
        if getattr(self.args, "stop_when", None):
            self.add_callback(StopWhenCallback(self.args.stop_when))
        if self._uses_update_batches() and isinstance(self.train_dataset, torch.utils.data.IterableDataset):
            # A stream of whole batches (e.g. the mlp experiment) has no rows to split or bucket; the planned
            # gradient accumulation would silently sum several whole batches.
            raise ValueError(
                f"per_device_batch_size={self.args.per_device_batch_size} / length_bucketed_sampling="
                f"{self.args.length_bucketed_sampling} are not allowed with a streamed training set "
                f"({type(self.train_dataset).__name__}); they need a map-style dataset of rows"
            )

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """`Trainer.save_model` (checkpoints and the final model), with `use_cache` saved as the model had it
        before training, not the Trainer's training-time False."""
        try:
            self._save_model_keeping_use_cache(output_dir, _internal_call)
        finally:
            if self.args.should_save:  # safetensors >= 0.8 writes 0600 whatever the umask (safetensors#782)
                for path in Path(output_dir or self.args.output_dir).rglob("*.safetensors"):
                    os.chmod(path, default_file_mode())

    def _save_model_keeping_use_cache(self, output_dir: str | None, _internal_call: bool) -> None:
        model = self.accelerator.unwrap_model(self.model)
        config = getattr(model, "config", None)
        if config is None or not hasattr(config, "use_cache"):
            return super().save_model(output_dir, _internal_call)
        during_training, config.use_cache = config.use_cache, getattr(model, "_hfe_use_cache", True)
        try:
            return super().save_model(output_dir, _internal_call)
        finally:
            config.use_cache = during_training

    def train(self, *args: Any, **kwargs: Any) -> Any:
        self._flop_params = None  # counted afresh for each run (a model may change between them)
        try:
            return super().train(*args, **kwargs)
        finally:  # an exception skips `on_train_end`: the signal handlers must not stay in "note it" mode
            self._preemption.restore()
            self._flop_params = None  # holds the model: no reference kept once training is over

    def floating_point_ops(self, inputs: dict[str, Any]) -> int:
        """`Trainer.floating_point_ops` (6 x elements of the main input x non-embedding parameters) with the
        parameter count taken once per model and `train()`, not by walking every module at every step (~2% of an
        mlp step); equal to the Trainer's count (`tests/core/test_step_overhead.py`). A model that gains or loses
        parameters in place during one `train()` would keep its first count (nothing here does)."""
        main_input = getattr(self.model, "main_input_name", "input_ids")
        if main_input not in inputs or not hasattr(self.model, "num_parameters"):
            return super().floating_point_ops(inputs)
        if self._flop_params is None or self._flop_params[0] is not self.model:
            self._flop_params = (self.model, self.model.num_parameters(exclude_embeddings=True))
        return 6 * inputs[main_input].numel() * self._flop_params[1]

    def create_scheduler(self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None):
        """`lr_sched_steps` set: the step schedule (`step_schedule`); otherwise `lr_scheduler_type`'s."""
        steps = getattr(self.args, "lr_sched_steps", None)
        if self.lr_scheduler is None and steps:
            self.lr_scheduler = step_schedule(
                optimizer or self.optimizer,
                steps,
                self.args.lr_sched_gamma,
                self.args.get_warmup_steps(num_training_steps),
            )
            mark_scheduler_created(self)
        return super().create_scheduler(num_training_steps, optimizer)

    def evaluate(
        self, eval_dataset: Any = None, ignore_keys: list[str] | None = None, metric_key_prefix: str = "eval"
    ) -> dict[str, float]:
        n = getattr(self.args, "max_eval_batches", None)
        ds = eval_dataset if eval_dataset is not None else self.eval_dataset
        if n is not None and ds is not None and hasattr(ds, "select"):
            rows = n * self.args.per_device_eval_batch_size * self.args.world_size
            if len(ds) > rows:
                ds = ds.select(range(rows))
        return super().evaluate(ds, ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix)
