"""Flat JSON configs read into dataclasses with `HfArgumentParser`, strictly.

A config is one flat JSON object (like the seeds' `hyperparameters.json`). Its keys are the fields of four
dataclasses: `RunArguments` (which experiment, where the run lives, how to resume), the experiment's model
and data arguments, and `ExperimentTrainingArguments` (a `TrainingArguments` subclass). Every key can be
overridden on the command line (`--learning_rate 1e-4`), the command line winning.

Identical to plain `HfArgumentParser` use except:
- unknown keys are rejected with the closest valid name suggested (file and command line alike);
- JSON values are type-checked through the same converters argparse uses for the command line;
- field metadata `range=(lo, hi)` and `must_exist=True` are checked after parsing;
- every problem is one line `config error: <key>=<value>: <what is allowed>` and exit status 2, raised
  before anything is written to disk.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import difflib
import json
import os
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Union, get_args, get_origin, get_type_hints

from transformers import HfArgumentParser, TrainingArguments
from transformers.hf_argparser import string_to_bool

from .microbatch import microbatch_sizes
from .seed_names import SEED_ALIASES, SEED_DROPPED, translate_seed_names, translate_value

if TYPE_CHECKING:
    from .registry import Experiment

# TrainingArguments.to_dict() entries that are derived by __post_init__ or secret: never recorded.
_DERIVED_TRAINING_KEYS = ("logging_dir", "use_cpu", "hub_token")  # hub_token: a secret, never written
# Our own field-metadata keys; stripped before argparse sees the metadata.
_OUR_METADATA = ("range", "must_exist")


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

    experiment: str = field(metadata={"help": "Registered experiment name (see `trainers/run.py --list`)."})
    exp_name: str | None = field(
        default=None, metadata={"help": "Run folder name under save_root. Default: the config file's stem."}
    )
    save_root: str = field(default="outputs", metadata={"help": "Parent folder of run folders."})
    fresh_start: bool = field(
        default=False,
        metadata={"help": "Start over even if the run folder has checkpoints. The old folder is moved aside "
                  "to <exp_name>.old-<time>, never deleted."},
    )
    restore_from: str | None = field(
        default=None,
        metadata={"help": "Resume from this checkpoint folder (weights, optimizer, RNG, data position).",
                  "must_exist": True},
    )
    init_checkpt: str | None = field(
        default=None,
        metadata={"help": "Load model weights only from this folder (a checkpoint or a saved model); "
                  "optimizer and step start fresh.", "must_exist": True},
    )
    torch_dtype: Literal["float32", "bfloat16", "float16"] = field(
        default="float32", metadata={"help": "Dtype the model is loaded in (mixed precision: use bf16/fp16)."}
    )
    multi_gpu: bool = field(
        default=False,
        metadata={"help": "Seed name kept for compatibility: processes are chosen by `accelerate launch`; "
                  "a warning is printed if true and only one process runs."},
    )
    requeue_on_preempt: bool = field(
        default=True,
        metadata={"help": "On SIGTERM/SIGUSR1 under SLURM, requeue the job after the checkpoint is written."},
    )


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
        metadata={"help": "Batch rows of similar length together (less padding); lengths from the "
                  "length_column_name column, else from input_ids."},
    )
    lr_sched_steps: list[int] | None = field(
        default=None,
        metadata={"help": "Step schedule: multiply the learning rate by lr_sched_gamma at each of these "
                  "steps (with lr_scheduler_type constant or constant_with_warmup; warmup_steps applies)."},
    )
    lr_sched_gamma: float = bounded(0.1, "Factor of the step schedule.", lo=0.0)

    def __post_init__(self) -> None:
        import torch

        if self.max_grad_norm is None:
            self.max_grad_norm = 0.0  # Trainer compares it with 0
        self._plan_microbatches()
        self._check_step_schedule()
        if self.bf16 and torch.cuda.is_available() and not self.use_cpu and not torch.cuda.is_bf16_supported():
            raise ConfigError("bf16", True, "a GPU with bfloat16 support (this one has none): use fp16 instead")
        # Without an accelerator, accelerate only builds a MULTI_CPU (gloo DDP) state when asked for the CPU;
        # otherwise two `accelerate launch` ranks would each train alone with world_size 1.
        if not self.use_cpu and not torch.cuda.is_available() and not torch.backends.mps.is_available():
            self.use_cpu = True
        super().__post_init__()

    def _plan_microbatches(self) -> None:
        cap = self.per_device_batch_size
        if cap is None:
            return
        if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
            raise ConfigError("per_device_batch_size", cap, "an integer >= 1, or null (off)")
        n_micro = len(microbatch_sizes(self.per_device_train_batch_size, cap))
        if self.gradient_accumulation_steps not in (1, n_micro):  # n_micro: set by an earlier __post_init__
            raise ConfigError(
                "gradient_accumulation_steps", self.gradient_accumulation_steps,
                f"1 (unset) with per_device_batch_size={cap}: it is derived from it ({n_micro} micro-batches "
                "here); the seed's n_microbatch and per_device_batch_size are likewise exclusive")
        self.gradient_accumulation_steps = n_micro
        self.per_device_eval_batch_size = min(self.per_device_eval_batch_size, cap)

    def _check_step_schedule(self) -> None:
        steps = self.lr_sched_steps
        if not steps:
            return
        if not isinstance(steps, (list, tuple)) or not all(
                isinstance(m, int) and not isinstance(m, bool) and m >= 1 for m in steps):
            raise ConfigError("lr_sched_steps", steps, "a list of optimizer steps >= 1")
        kind = str(getattr(self.lr_scheduler_type, "value", self.lr_scheduler_type))
        if kind not in ("constant", "constant_with_warmup"):
            raise ConfigError("lr_sched_steps", steps, "only with lr_scheduler_type constant or "
                              f"constant_with_warmup (got {kind}): the step schedule replaces it")
        if getattr(self, "lr_decay_power", None) is not None:  # an experiment's own schedule (blotch)
            raise ConfigError("lr_sched_steps", steps, "not together with lr_decay_power (two schedules)")
        if not 0 <= self.lr_sched_gamma:
            raise ConfigError("lr_sched_gamma", self.lr_sched_gamma, "a factor >= 0")


@dataclass
class RunConfig:
    """The parsed, validated config of one run."""

    run: RunArguments
    model: Any
    data: Any
    training: ExperimentTrainingArguments
    experiment_cls: type[Experiment]
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
        defaults = {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
                    for f in dataclasses.fields(type(self.training))
                    if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING}
        defaults = json.loads(json.dumps(defaults, default=str))
        derived = set(_DERIVED_TRAINING_KEYS)
        if self.training.per_device_batch_size is not None:
            derived.add("gradient_accumulation_steps")  # planned from per_device_batch_size on every parse
        out.update({k: v for k, v in train.items() if k != "output_dir" and (k not in defaults or defaults[k] != v)
                    and not (k.startswith("_") or k in derived)})
        return json.loads(json.dumps(out, default=str))


class _ParseError(Exception):
    pass


class StrictArgumentParser(HfArgumentParser):
    """`HfArgumentParser` that raises instead of printing usage, and knows our metadata keys."""

    def error(self, message: str) -> None:  # argparse calls this on bad command-line values
        raise _ParseError(message)

    @staticmethod
    def _parse_dataclass_field(parser: argparse.ArgumentParser, fld: dataclasses.Field) -> None:
        if any(k in fld.metadata for k in _OUR_METADATA):
            fld = copy.copy(fld)
            fld.metadata = types.MappingProxyType({k: v for k, v in fld.metadata.items() if k not in _OUR_METADATA})
        HfArgumentParser._parse_dataclass_field(parser, fld)


def _type_name(action: argparse.Action) -> str:
    if action.choices:
        return "one of " + ", ".join(repr(c) for c in action.choices)
    if action.type is string_to_bool:
        return "a boolean (true/false)"
    if action.type in (int, float, str):
        return {"int": "an integer", "float": "a number", "str": "a string"}[action.type.__name__]
    return f"a value of type {getattr(action.type, '__name__', action.type)}"


def _admits_none(tp: Any) -> bool:
    return (get_origin(tp) in (Union, types.UnionType)) and type(None) in get_args(tp)


def _suggest(key: str, valid: list[str]) -> str:
    if key in SEED_DROPPED:
        return f"the original's option {key!r} has no counterpart here: {SEED_DROPPED[key]}"
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}?" if close else "see `trainers/run.py --experiment <name> --help` for valid keys"
    return f"unknown key; {hint}"


def _admits_list(tp: Any) -> bool:
    return get_origin(tp) is list or any(get_origin(a) is list or a is list for a in get_args(tp))


def _convert_json_value(action: argparse.Action, key: str, value: Any, nullable: bool, listy: bool = False) -> Any:
    """Check and convert one JSON value with the converter argparse would use for it on the command line."""
    if value is None:
        if nullable or action.default is None:
            return None
        raise ConfigError(key, value, _type_name(action) + " (null is not allowed)")
    if isinstance(value, dict):
        return value  # dict-typed TrainingArguments fields (lr_scheduler_kwargs, ...) validate themselves
    many = action.nargs in ("+", "*") or (listy and isinstance(value, list))
    if isinstance(value, list) and not many:
        raise ConfigError(key, value, f"a single value, {_type_name(action)}")
    items = value if isinstance(value, list) else [value]
    out = []
    for v in items:
        if isinstance(v, bool) and action.type not in (string_to_bool, None) and not action.choices:
            raise ConfigError(key, v, _type_name(action))
        if isinstance(v, float) and action.type is int:
            raise ConfigError(key, v, "an integer")
        try:
            conv = action.type(v if isinstance(v, str) else json.dumps(v)) if action.type else v
        except (TypeError, ValueError, argparse.ArgumentTypeError):
            raise ConfigError(key, v, _type_name(action)) from None
        if action.choices and conv not in action.choices:
            raise ConfigError(key, v, _type_name(action))
        out.append(conv)
    return out if many else out[0]


def _check_metadata(obj: Any) -> None:
    for fld in dataclasses.fields(obj):
        value = getattr(obj, fld.name)
        if value is None:
            continue
        lo, hi = fld.metadata.get("range", (None, None))
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            what = "a probability in [0, 1]" if (lo, hi) == (0.0, 1.0) else (
                f"a value in [{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]")
            raise ConfigError(fld.name, value, what)
        if fld.metadata.get("must_exist") and not Path(value).exists():
            raise ConfigError(fld.name, value, "an existing path (not found)")


def _load_config_file(path: str) -> dict[str, Any]:
    if not os.path.isfile(path):
        raise ConfigError("config", path, "an existing JSON file (not found)")
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except json.JSONDecodeError as e:
        raise ConfigError("config", path, f"valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None
    if not isinstance(raw, dict):
        raise ConfigError("config", path, "a JSON object of key: value pairs")
    return raw


def _translate_cli(argv: list[str]) -> list[str]:
    """Seed names on the command line -> ours, and seed values (`--grad_clip none`) -> ours."""
    out: list[str] = []
    pending: str | None = None  # the key whose value is the next token
    for tok in argv:
        if pending is not None and not tok.startswith("--"):
            out.append(str(translate_value(pending, tok)))
            pending = None
            continue
        pending = None
        if tok.startswith("--"):
            name, eq, value = tok[2:].partition("=")
            key = name
            if name in SEED_ALIASES:
                key = SEED_ALIASES[name][0]
            tok = "--" + key + (eq + str(translate_value(name, value)) if eq else "")
            pending = None if eq else name
        out.append(tok)
    return out


# A restored config's keys that describe how *that* run started, not what it trains.
_NOT_RESTORED = ("restore_from", "fresh_start", "init_checkpt")


def restored_config(checkpoint: str) -> dict[str, Any]:
    """The resolved config a checkpoint was written under (`run_config.json` in it, else in its run folder),
    less the keys that only said how that run started (`fresh_start`, `init_checkpt`, `restore_from`)."""
    ckpt = Path(checkpoint)
    for path in (ckpt / "run_config.json", ckpt.parent / "run_config.json"):
        if path.is_file():
            cfg = _load_config_file(str(path))
            return {k: v for k, v in cfg.items() if k not in _NOT_RESTORED}
    raise ConfigError("restore_from", checkpoint, "a checkpoint with run_config.json in it or in its run folder "
                      "(or give --config too)")


def parse_config_strict(argv: list[str] | None = None) -> RunConfig:
    """Parse `--config file.json` plus command-line overrides; raises `ConfigError` on any problem."""
    from .registry import available_experiments, get_experiment

    argv = _translate_cli(list(sys.argv[1:] if argv is None else argv))
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--config")
    pre.add_argument("--experiment")
    known, rest = pre.parse_known_args(argv)
    peek = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    peek.add_argument("--restore_from")
    restore_from = peek.parse_known_args(rest)[0].restore_from
    file_cfg: dict[str, Any] = {}
    if known.config:
        try:
            file_cfg, _ = translate_seed_names(_load_config_file(known.config))
        except ValueError as e:
            raise ConfigError("config", known.config, str(e)) from None
    elif restore_from:  # the seed's `-restore`: the checkpoint's own config, command-line keys overriding
        if not Path(restore_from).exists():
            raise ConfigError("restore_from", restore_from, "an existing path (not found)")
        file_cfg = restored_config(restore_from)

    name = known.experiment or file_cfg.pop("experiment", None)
    file_cfg.pop("experiment", None)
    names = available_experiments()
    if not name:
        raise ConfigError("experiment", None, "required: one of " + ", ".join(names))
    if name not in names:
        close = difflib.get_close_matches(str(name), names, n=1)
        raise ConfigError("experiment", name, "one of " + ", ".join(names) + (f" (did you mean {close[0]!r}?)"
                                                                                if close else ""))
    exp_cls = get_experiment(name)

    dtypes = (RunArguments, exp_cls.model_args, exp_cls.data_args, exp_cls.training_args)
    parser = StrictArgumentParser(dtypes, prog="trainers/run.py")
    actions = {a.dest: a for a in parser._actions if a.dest != "help"}
    hints = {f.name: get_type_hints(d)[f.name] for d in dtypes for f in dataclasses.fields(d)}
    nullable = {k for k, tp in hints.items() if _admits_none(tp)}
    valid_keys = sorted(actions)

    defaults: dict[str, Any] = {"experiment": name}
    for key, value in file_cfg.items():
        if key not in actions:
            raise ConfigError(key, value, _suggest(key, valid_keys))
        defaults[key] = _convert_json_value(actions[key], key, value, key in nullable,
                                            _admits_list(hints.get(key)))
    parser.set_defaults(**defaults)
    for key in defaults:
        actions[key].required = False
    if "output_dir" in defaults or any(t.split("=")[0] in ("--output_dir", "--output-dir") for t in rest):
        raise ConfigError("output_dir", defaults.get("output_dir"),
                          "not settable: the run folder is save_root/exp_name")

    try:
        namespace, unknown = parser.parse_known_args(rest)
    except _ParseError as e:
        msg = str(e)
        if msg.startswith("the following arguments are required"):
            keys = msg.split(":", 1)[1].strip()
            raise ConfigError(keys.split(",")[0].strip().lstrip("-"), None,
                              f"required: set it in the config file or pass {keys.split(',')[0].strip()} VALUE"
                              ) from None
        raise ConfigError("command line", " ".join(rest), msg) from None
    if unknown:
        tok = next((t for t in unknown if t.startswith("--")), unknown[0])
        key = tok.lstrip("-").split("=")[0]
        raise ConfigError(key, tok, _suggest(key, valid_keys) if tok.startswith("--") else "unexpected value")

    values = vars(namespace)
    run_vals = {f.name: values[f.name] for f in dataclasses.fields(RunArguments)}
    if not run_vals.get("exp_name"):
        run_vals["exp_name"] = Path(known.config).stem if known.config else name
    values["output_dir"] = str(Path(run_vals["save_root"]) / run_vals["exp_name"])
    objs = []
    for dtype in dtypes:
        inputs = {f.name: (run_vals if dtype is RunArguments else values)[f.name]
                  for f in dataclasses.fields(dtype) if f.init}
        try:
            obj = dtype(**inputs)
        except ConfigError:
            raise
        except (ValueError, TypeError) as e:
            raise ConfigError(dtype.__name__, None, " ".join(str(e).split())) from None
        _check_metadata(obj)
        objs.append(obj)
    cfg = RunConfig(*objs, experiment_cls=exp_cls, config_path=known.config)
    restore = cfg.run.restore_from
    if cfg.run.fresh_start and restore and cfg.run_dir.resolve() in Path(restore).resolve().parents:
        raise ConfigError("fresh_start", True, f"not with restore_from inside the run folder {cfg.run_dir} "
                          "(fresh_start moves it aside): restore into another exp_name")
    exp_cls.validate(cfg)
    return cfg


def parse_config(argv: list[str] | None = None) -> RunConfig:
    """`parse_config_strict` for scripts: prints one line and exits with status 2 on a bad config."""
    try:
        return parse_config_strict(argv)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
