"""The arguments every run has: which experiment and where (`RunArguments`), `TrainingArguments`
with this package's defaults and framework fields (`ExperimentTrainingArguments`), the parsed `RunConfig`, and
`ConfigError`, the one-line error every bad value becomes. Field metadata `range=(lo, hi)` (helpers `prob`,
`bounded`) and `must_exist=True` are checked by the parser (`core.parsing`).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from transformers import TrainingArguments

from .microbatch import microbatch_sizes

# TrainingArguments.to_dict() entries that are derived by __post_init__ or secret: never recorded.
_DERIVED_TRAINING_KEYS = ("logging_dir", "use_cpu", "hub_token")  # hub_token: a secret, never written


# Our own field-metadata keys; stripped before argparse sees the metadata.
_OUR_METADATA = ("range", "must_exist")


MAX_SEED = 2**32 - 1
# `report_to` names transformers knows -> the module that integration needs.
REPORTER_MODULES = {
    "wandb": "wandb",
    "trackio": "trackio",
    "mlflow": "mlflow",
    "comet_ml": "comet_ml",
    "neptune": "neptune",
    "clearml": "clearml",
    "dvclive": "dvclive",
    "swanlab": "swanlab",
    "codecarbon": "codecarbon",
    "azure_ml": "azureml",
    "flyte": "flytekit",
    "tensorboard": "tensorboard",
}


class ConfigError(Exception):
    """A bad config value: names the key, the value and what is allowed."""

    def __init__(self, key: str, value: Any, allowed: str) -> None:
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"{key}={value!r}: {allowed}")


def prob(default: float, help: str) -> Any:
    """A probability field: checked to lie in [0, 1]."""
    return field(default=default, metadata={"help": help, "range": (0.0, 1.0)})


def bounded(default: Any, help: str, lo: float | None = None, hi: float | None = None) -> Any:
    """A numeric field checked to lie in [lo, hi] (inclusive; None = unbounded)."""
    return field(default=default, metadata={"help": help, "range": (lo, hi)})


@dataclass
class RunArguments:
    """Which experiment runs, where its folder lives, and how an existing run folder is treated."""

    experiment: str = field(metadata={"help": "Registered experiment name (see `hfe list`)."})
    exp_name: str | None = field(
        default=None, metadata={"help": "Run folder name under save_root. Default: the config file's stem."}
    )
    save_root: str = field(default="outputs", metadata={"help": "Parent folder of run folders."})
    fresh_start: bool = field(
        default=False,
        metadata={
            "help": "Start over even if the run folder has checkpoints. The old folder is moved aside "
            "to <exp_name>.old-<time>, never deleted."
        },
    )
    restore_from: str | None = field(
        default=None,
        metadata={
            "help": "Resume from this checkpoint folder (weights, optimizer, RNG, data position).",
            "must_exist": True,
        },
    )
    init_checkpt: str | None = field(
        default=None,
        metadata={
            "help": "Load model weights only from this folder (a checkpoint or a saved model); "
            "optimizer and step start fresh.",
            "must_exist": True,
        },
    )
    torch_dtype: Literal["float32", "bfloat16", "float16"] = field(
        default="float32", metadata={"help": "Dtype the model is loaded in (mixed precision: use bf16/fp16)."}
    )
    multi_gpu: bool = field(
        default=False,
        metadata={
            "help": "Seed name kept for compatibility: processes are chosen by `accelerate launch`; "
            "a warning is printed if true and only one process runs."
        },
    )
    requeue_on_preempt: bool = field(
        default=True,
        metadata={"help": "On SIGTERM/SIGUSR1 under SLURM, requeue the job after the checkpoint is written."},
    )
    wandb_project: str | None = field(
        default=None,
        metadata={"help": "W&B project of this run (WANDB_PROJECT; default: the environment's, else 'huggingface')."},
    )
    wandb_group: str | None = field(
        default=None,
        metadata={"help": "W&B group of this run (WANDB_RUN_GROUP); sweep jobs default to the sweep's name."},
    )
    run_tags: list[str] | None = field(
        default=None,
        metadata={"help": "Tags of this run in W&B (WANDB_TAGS): up to 64 characters each, no commas."},
    )
    gpu: str | None = field(
        default=None,
        metadata={
            "help": "One GPU for this run: its index (among CUDA_VISIBLE_DEVICES) or 'auto' (the one with the most "
            "free memory, the CPU when there is none); sets CUDA_VISIBLE_DEVICES. Default: as launched. Not for "
            "several processes (accelerate launch places them)."
        },
    )

    def __post_init__(self) -> None:
        if self.gpu is not None and self.gpu != "auto" and not str(self.gpu).isdigit():
            raise ConfigError("gpu", self.gpu, "a GPU index (0, 1, ...) or 'auto'")
        for tag in self.run_tags or []:
            if not isinstance(tag, str) or not tag.strip() or "," in tag or len(tag) > 64:
                raise ConfigError(
                    "run_tags", self.run_tags, "a list of non-empty tags, each <= 64 characters, no commas"
                )


_STOP_WHEN_RE = re.compile(r"^\s*([A-Za-z_][\w./-]*)\s*(>=|<=|>|<)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")


def parse_stop_when(text: str) -> tuple[str, str, float]:
    """`"eval_valid_accuracy>=0.95"` -> (metric, comparison, value); ValueError for anything else."""
    m = _STOP_WHEN_RE.match(str(text))
    if not m:
        raise ValueError("'<metric><op><number>' with op one of >= <= > <, e.g. 'eval_valid_accuracy>=0.95'")
    return m.group(1), m.group(2), float(m.group(3))


@dataclass
class ExperimentTrainingArguments(TrainingArguments):
    """`TrainingArguments` with this package's defaults and extra fields.

    Identical to `TrainingArguments` except: `output_dir` is derived (`save_root/exp_name`) and may not be set;
    TensorBoard is the default reporter; logging is more frequent; `max_eval_batches` bounds evaluation;
    `max_grad_norm` may be null (= 0, no clipping); and the seed framework's `per_device_batch_size`,
    `length_bucketed_sampling` and step schedule (`lr_sched_steps`, `lr_sched_gamma`), which
    `ExperimentTrainer` implements for every experiment (docs/framework.md).
    """

    output_dir: str | None = field(default=None, metadata={"help": "Derived from save_root/exp_name; do not set."})
    report_to: None | str | list[str] = field(  # noqa: RUF036 - order matters to HfArgumentParser
        default="tensorboard", metadata={"help": "Loggers: tensorboard (default), wandb, trackio, none."}
    )
    logging_steps: float = field(default=10, metadata={"help": "Log the training loss every N steps."})
    save_steps: float = field(default=200, metadata={"help": "Checkpoint every N steps."})
    save_total_limit: int | None = field(default=3, metadata={"help": "Keep at most N complete checkpoints."})
    max_grad_norm: float | None = bounded(
        1.0, "Clip the gradient norm to this (seed: grad_clip); 0, null or 'none' = no clipping.", lo=0.0
    )
    max_eval_batches: int | None = bounded(None, "Evaluate on at most N batches (seed: max_val_loops).", lo=1)
    per_device_batch_size: int | None = bounded(
        None,
        "At most this many rows per forward pass: per_device_train_batch_size (the update batch of one "
        "device) is split into near-equal micro-batches with exact gradient accumulation (uneven division "
        "allowed); sets gradient_accumulation_steps and caps per_device_eval_batch_size.",
        lo=1,
    )
    length_bucketed_sampling: bool = field(
        default=False,
        metadata={
            "help": "Batch rows of similar length together (less padding); lengths from the "
            "length_column_name column, else from input_ids."
        },
    )
    lr_sched_steps: list[int] | None = field(
        default=None,
        metadata={
            "help": "Step schedule: multiply the learning rate by lr_sched_gamma at each of these "
            "steps (with lr_scheduler_type constant or constant_with_warmup; warmup_steps applies)."
        },
    )
    lr_sched_gamma: float = bounded(0.1, "Factor of the step schedule.", lo=0.0)
    stop_when: str | None = field(
        default=None,
        metadata={
            "help": "Stop training at the first evaluation where this holds, e.g. 'eval_valid_accuracy>=0.95' "
            "(ops >= <= > <); the final evaluation and model follow as after max_steps, the cap."
        },
    )
    torch_threads: str = field(
        default="auto",
        metadata={
            "help": "Intra-op CPU threads: a number, or 'auto' = time the first steps with 1 thread and with all "
            "cores and keep the faster (only for one CPU process without OMP_NUM_THREADS; stored in the run "
            "folder's torch_threads.json and reused on resume)."
        },
    )

    def __post_init__(self) -> None:
        import torch

        if self.max_grad_norm is None:
            self.max_grad_norm = 0.0  # Trainer compares it with 0
        self._check_values()
        self._plan_microbatches()
        self._check_step_schedule()
        if self.bf16 and torch.cuda.is_available() and not self.use_cpu and not torch.cuda.is_bf16_supported():
            raise ConfigError("bf16", True, "a GPU with bfloat16 support (this one has none): use fp16 instead")
        # Without an accelerator, accelerate only builds a MULTI_CPU (gloo DDP) state when asked for the CPU;
        # otherwise two `accelerate launch` ranks would each train alone with world_size 1.
        if not self.use_cpu and not torch.cuda.is_available() and not torch.backends.mps.is_available():
            self.use_cpu = True
        super().__post_init__()

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (`training_args.bin` in every checkpoint and in `model/`) without secrets: `hub_token` and any
        other `*_token` field is left out (the Trainer in this process keeps it in memory)."""
        state = dict(self.__dict__)
        for key in state:
            if key.endswith("_token") and isinstance(state[key], str):
                state[key] = None
        return state

    def _check_values(self) -> None:
        """What `TrainingArguments` would accept and the Trainer then fail on (or train wrongly with)."""
        threads = self.torch_threads
        if threads != "auto" and not (str(threads).isdigit() and int(threads) >= 1):
            raise ConfigError("torch_threads", threads, "'auto' or a number of threads >= 1")
        if self.stop_when is not None:
            try:
                parse_stop_when(self.stop_when)
            except ValueError as e:
                raise ConfigError("stop_when", self.stop_when, str(e)) from None
            if str(getattr(self.eval_strategy, "value", self.eval_strategy)) == "no":
                raise ConfigError("stop_when", self.stop_when, "needs evaluations: set eval_strategy steps or epoch")
        for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(name, value, "an integer >= 1")
        lr = self.learning_rate
        if not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr < 0:
            raise ConfigError("learning_rate", lr, "a finite number >= 0")
        for name in ("seed", "data_seed"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= MAX_SEED:
                raise ConfigError(name, value, f"an integer in [0, {MAX_SEED}] (numpy's seed range)")
        reporters = [self.report_to] if isinstance(self.report_to, str) else list(self.report_to or [])
        for name in reporters:
            module = REPORTER_MODULES.get(name)
            if module is not None and importlib.util.find_spec(module) is None:
                raise ConfigError("report_to", name, f"not installed (pip install {module}); or tensorboard / none")
        if self.save_only_model:
            raise ConfigError(
                "save_only_model",
                True,
                "false: a checkpoint without optimizer, scheduler and RNG state cannot resume exactly "
                "(bound the disk with save_total_limit instead)",
            )
        if self.save_total_limit == 1 and (self.load_best_model_at_end or self.metric_for_best_model):
            raise ConfigError(
                "save_total_limit",
                1,
                ">= 2 with load_best_model_at_end / metric_for_best_model: the Trainer then deletes every "
                "checkpoint but the best at the end, the one a rerun resumes from included",
            )
        if self.push_to_hub:
            from huggingface_hub import constants

            if constants.HF_HUB_OFFLINE:
                raise ConfigError(
                    "push_to_hub",
                    True,
                    "needs the Hugging Face Hub, which is offline "
                    "(HF_HUB_OFFLINE=1): set push_to_hub false, or push later",
                )

    def _plan_microbatches(self) -> None:
        cap = self.per_device_batch_size
        if cap is None:
            return
        if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
            raise ConfigError("per_device_batch_size", cap, "an integer >= 1, or null (off)")
        n_micro = len(microbatch_sizes(self.per_device_train_batch_size, cap))
        if self.gradient_accumulation_steps not in (1, n_micro):  # n_micro: set by an earlier __post_init__
            raise ConfigError(
                "gradient_accumulation_steps",
                self.gradient_accumulation_steps,
                f"1 (unset) with per_device_batch_size={cap}: it is derived from it ({n_micro} micro-batches "
                "here); the seed's n_microbatch and per_device_batch_size are likewise exclusive",
            )
        self.gradient_accumulation_steps = n_micro
        self.per_device_eval_batch_size = min(self.per_device_eval_batch_size, cap)

    def _check_step_schedule(self) -> None:
        steps = self.lr_sched_steps
        if not steps:
            return
        if not isinstance(steps, (list, tuple)) or not all(
            isinstance(m, int) and not isinstance(m, bool) and m >= 1 for m in steps
        ):
            raise ConfigError("lr_sched_steps", steps, "a list of optimizer steps >= 1")
        kind = str(getattr(self.lr_scheduler_type, "value", self.lr_scheduler_type))
        if kind not in ("constant", "constant_with_warmup"):
            raise ConfigError(
                "lr_sched_steps",
                steps,
                "only with lr_scheduler_type constant or "
                f"constant_with_warmup (got {kind}): the step schedule replaces it",
            )
        if not 0 <= self.lr_sched_gamma:
            raise ConfigError("lr_sched_gamma", self.lr_sched_gamma, "a factor >= 0")


@dataclass
class RunConfig:
    """The parsed, validated config of one run."""

    run: RunArguments
    model: Any
    data: Any
    training: ExperimentTrainingArguments
    experiment_cls: type  # the `core.experiment.Experiment` subclass named by `run.experiment`
    config_path: str | None = None

    @property
    def run_dir(self) -> Path:
        return Path(self.training.output_dir)

    def to_dict(self) -> dict[str, Any]:
        """The resolved flat config (every field), JSON-serialisable; rerunnable with `--config`."""
        out: dict[str, Any] = {}
        for obj in (self.run, self.model, self.data):
            out.update(dataclasses.asdict(obj))
        train = self.training.to_dict()
        # Keep only what differs from the field defaults (TrainingArguments has ~150 fields). Defaults come from
        # the dataclass fields: building a second TrainingArguments would reset accelerate's global state.
        defaults = {
            f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
            for f in dataclasses.fields(type(self.training))
            if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        }
        defaults = json.loads(json.dumps(defaults, default=str))
        derived = set(_DERIVED_TRAINING_KEYS)
        if self.training.per_device_batch_size is not None:
            derived.add("gradient_accumulation_steps")  # planned from per_device_batch_size on every parse
        out.update(
            {
                k: v
                for k, v in train.items()
                if k != "output_dir"
                and (k not in defaults or defaults[k] != v)
                and not (k.startswith("_") or k in derived)
            }
        )
        return json.loads(json.dumps(out, default=str))
