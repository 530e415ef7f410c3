"""Flat JSON or YAML configs read into the experiment's dataclasses with `HfArgumentParser`, strictly.

A config is one flat JSON object (like the seeds' `hyperparameters.json`) whose keys are the fields of
`RunArguments`, the experiment's model and data arguments and its `TrainingArguments`; the command line
overrides it. Unlike plain `HfArgumentParser`: unknown keys are rejected with the closest valid name, JSON values
go through argparse's converters, `range`/`must_exist` metadata is checked, and every problem is one line
`config error: <key>=<value>: <what is allowed>` (exit 2) before anything touches the disk.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import difflib
import json
import math
import re
import sys
import types
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any, Union, get_args, get_origin, get_type_hints

from transformers import HfArgumentParser
from transformers.hf_argparser import string_to_bool

from .config import _OUR_METADATA, ConfigError, RunArguments, RunConfig
from .config_files import load_config_file
from .gpu_choice import apply_gpu
from .run_folder import checkpoint_problem, is_complete
from .seed_names import EVAL_INTERVAL_NAMES, SEED_ALIASES, SEED_DROPPED, translate_seed_names, translate_value

if TYPE_CHECKING:
    pass


class _ParseError(Exception):
    pass


class HelpRequested(Exception):
    """`--help` on a run's command line: `text` is the grouped help of its experiment (the CLI prints it)."""

    def __init__(self, text: str) -> None:
        self.text = text
        super().__init__("help requested")


def _first_line(cls: type) -> str:
    doc = (cls.__doc__ or "").strip()
    return doc.splitlines()[0] if doc else ""


def _help_safe(action: argparse.Action) -> argparse.Action:
    """A copy whose help has literal `%` escaped: argparse %-formats help strings ("20%" would raise)."""
    out = copy.copy(action)
    if out.help:
        out.help = re.sub(r"%(?!\()", "%%", out.help)
    return out


def grouped_help(parser: argparse.ArgumentParser, dtypes: tuple[type, ...], experiment: str, config: str | None) -> str:
    """Every key of `experiment` grouped by the dataclass that declares it (the run's, the model's, the data's,
    the experiment's and the framework's training fields, then transformers' `TrainingArguments`), with the seed
    READMEs' names that are accepted for them. Defaults shown are the config file's values when one is given."""
    from transformers import TrainingArguments

    from .config import ExperimentTrainingArguments

    run_t, model_t, data_t, train_t = dtypes
    names = {t: {f.name for f in dataclasses.fields(t)} for t in (TrainingArguments, ExperimentTrainingArguments)}
    train_fields = {f.name for f in dataclasses.fields(train_t)}
    own = train_fields - names[ExperimentTrainingArguments]
    framework = names[ExperimentTrainingArguments] - names[TrainingArguments]
    groups: list[tuple[str, str, set[str]]] = [
        (f"run ({run_t.__name__})", _first_line(run_t), {f.name for f in dataclasses.fields(run_t)} - {"experiment"}),
        (f"model ({model_t.__name__})", _first_line(model_t), {f.name for f in dataclasses.fields(model_t)}),
        (f"data ({data_t.__name__})", _first_line(data_t), {f.name for f in dataclasses.fields(data_t)}),
    ]
    if own:
        groups.append((f"training: {experiment} ({train_t.__name__})", _first_line(train_t), own))
    groups.append(("training: framework (ExperimentTrainingArguments)", "This package's training fields.", framework))
    groups.append(
        (
            "training: transformers (TrainingArguments)",
            "Hugging Face's own; see the TrainingArguments documentation.",
            train_fields - own - framework - {"output_dir"},
        )
    )
    shown = "this config's values" if config else "defaults"
    hp = argparse.ArgumentParser(
        prog="hfe run",
        usage=f"hfe run --config FILE.json|yaml [--key VALUE ...]    (experiment {experiment}; shown: {shown})",
        add_help=False,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    for title, description, fields in groups:
        acts = [_help_safe(a) for a in parser._actions if a.dest in fields]  # argparse: no public "add an action"
        if not acts:
            continue
        group = hp.add_argument_group(title, description)
        group._group_actions.extend(acts)
    aliases = [
        f"  --{seed:<28} -> {target}" + (f"  ({why})" if why else "")
        for seed, (target, why) in sorted(SEED_ALIASES.items())
        if any(target in fields for _, _, fields in groups)
    ]
    text = hp.format_help()
    if aliases:
        text += "\nseed names (the original projects' spelling; accepted in config files and here):\n"
        text += "\n".join(aliases) + "\n"
    return text


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
    hint = f"did you mean {close[0]!r}?" if close else "see `hfe run --experiment <name> --help` for valid keys"
    return f"unknown key; {hint}"


def _admits_list(tp: Any) -> bool:
    return get_origin(tp) is list or any(get_origin(a) is list or a is list for a in get_args(tp))


def _admits_dict(tp: Any) -> bool:
    return tp is dict or get_origin(tp) is dict or any(a is dict or get_origin(a) is dict for a in get_args(tp))


def _convert_json_value(
    action: argparse.Action, key: str, value: Any, nullable: bool, listy: bool = False, dicty: bool = False
) -> Any:
    """Check and convert one JSON value with the converter argparse would use for it on the command line."""
    if value is None:
        if nullable or action.default is None:
            return None
        raise ConfigError(key, value, _type_name(action) + " (null is not allowed)")
    if isinstance(value, dict):
        if dicty:
            return value  # dict-typed TrainingArguments fields (lr_scheduler_kwargs, ...) validate themselves
        raise ConfigError(key, value, _type_name(action))
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
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(v, float) and not math.isfinite(v):
                raise ConfigError(fld.name, value, "a finite number (not NaN or infinity)")
        lo, hi = fld.metadata.get("range", (None, None))
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            what = (
                "a probability in [0, 1]"
                if (lo, hi) == (0.0, 1.0)
                else (f"a value in [{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]")
            )
            raise ConfigError(fld.name, value, what)
        if fld.metadata.get("must_exist") and not Path(value).exists():
            raise ConfigError(fld.name, value, "an existing path (not found)")


def _translate_cli(argv: list[str]) -> list[str]:
    """Seed names on the command line -> ours, and seed values (`--grad_clip none`) -> ours. A key given twice
    (e.g. `--lr` and `--learning_rate`: argparse would keep the last one silently) is an error. A seed evaluation
    interval (`--valid_every N`) also switches evaluation on, as in a config file."""
    out: list[str] = []
    seen: dict[str, str] = {}
    pending: str | None = None  # the key whose value is the next token
    for tok in argv:
        if pending is not None and not tok.startswith("--"):
            value = str(translate_value(pending, tok))
            if value.startswith("-"):  # `--weight_decay -1e-3`: argparse would read "-1e-3" as an option
                out[-1] = f"{out[-1]}={value}"
            else:
                out.append(value)
            pending = None
            continue
        pending = None
        if tok.startswith("--"):
            name, eq, value = tok[2:].partition("=")
            key = name
            if name in SEED_ALIASES:
                key = SEED_ALIASES[name][0]
            if key in seen and key not in ("config", "experiment"):
                raise ConfigError(
                    key, tok, f"given twice on the command line (as --{seen[key]} and --{name}); keep one"
                )
            seen[key] = name
            tok = "--" + key + (eq + str(translate_value(name, value)) if eq else "")
            pending = None if eq else name
        out.append(tok)
    interval = next((seen[k] for k in seen if seen[k] in EVAL_INTERVAL_NAMES), None)
    if interval is not None and "eval_strategy" not in seen:  # as in a config file: the original validated then
        out += ["--eval_strategy", "steps"]
    return out


# A restored config's keys that describe how *that* run started, not what it trains.
_NOT_RESTORED = ("restore_from", "fresh_start", "init_checkpt")


def restored_config(checkpoint: str) -> dict[str, Any]:
    """The resolved config a checkpoint was written under (`run_config.json` in it, else in its run folder),
    less the keys that only said how that run started (`fresh_start`, `init_checkpt`, `restore_from`)."""
    ckpt = Path(checkpoint)
    for path in (ckpt / "run_config.json", ckpt.parent / "run_config.json"):
        if path.is_file():
            cfg = load_config_file(str(path))
            return {k: v for k, v in cfg.items() if k not in _NOT_RESTORED}
    raise ConfigError(
        "restore_from",
        checkpoint,
        "a checkpoint with run_config.json in it or in its run folder (or give --config too)",
    )


def _check_run_paths(save_root: str, exp_name: str) -> None:
    """The run folder `save_root/exp_name` lies inside `save_root`, apart from its shared `data/` folder."""
    if not save_root or not save_root.strip():
        raise ConfigError("save_root", save_root, "a non-empty folder path")
    for key, value in (("save_root", save_root), ("exp_name", exp_name)):
        if not value.isprintable():
            raise ConfigError(key, value, "printable characters only (no NUL, tabs or newlines)")
    name = PurePath(exp_name)
    if name.is_absolute():
        raise ConfigError("exp_name", exp_name, "a relative folder name (the run folder is save_root/exp_name)")
    root = Path(save_root).resolve()
    run_dir = (root / name).resolve()
    if not name.parts or ".." in name.parts or root not in run_dir.parents:
        raise ConfigError("exp_name", exp_name, "a folder name inside save_root (no '..')")
    if name.parts[0] == "data":
        raise ConfigError("exp_name", exp_name, "another name: save_root/data holds the generated datasets")


def parse_config_strict(argv: list[str] | None = None, select_gpu: bool = False) -> RunConfig:
    """Parse `--config file.json|yaml` plus command-line overrides; raises `ConfigError` on any problem.

    `select_gpu` (the run's own parse, not a validation): apply `gpu` to this process before `TrainingArguments`
    starts CUDA."""
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
            file_cfg, _ = translate_seed_names(load_config_file(known.config))
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
        raise ConfigError(
            "experiment", name, "one of " + ", ".join(names) + (f" (did you mean {close[0]!r}?)" if close else "")
        )
    exp_cls = get_experiment(name)

    dtypes = (RunArguments, exp_cls.model_args, exp_cls.data_args, exp_cls.training_args)
    parser = StrictArgumentParser(dtypes, prog="hfe run", add_help=False)
    # A bool field defaulting to True also gets a `--no_<key>` flag with the same dest (store_false, no type);
    # a config file's value is for the field itself, so the `--<key>` action must win the dest.
    actions = {
        a.dest: a
        for a in sorted(parser._actions, key=lambda a: not any(o.startswith("--no_") for o in a.option_strings))
        if a.dest != "help"
    }
    hints = {f.name: get_type_hints(d)[f.name] for d in dtypes for f in dataclasses.fields(d)}
    nullable = {k for k, tp in hints.items() if _admits_none(tp)}
    valid_keys = sorted(actions)

    defaults: dict[str, Any] = {"experiment": name}
    for key, value in file_cfg.items():
        if key not in actions:
            raise ConfigError(key, value, _suggest(key, valid_keys))
        defaults[key] = _convert_json_value(
            actions[key], key, value, key in nullable, _admits_list(hints.get(key)), _admits_dict(hints.get(key))
        )
    parser.set_defaults(**defaults)
    for key in defaults:
        actions[key].required = False
    if "-h" in rest or "--help" in rest:
        raise HelpRequested(grouped_help(parser, dtypes, name, known.config))
    if "output_dir" in defaults or any(t.split("=")[0] in ("--output_dir", "--output-dir") for t in rest):
        raise ConfigError(
            "output_dir", defaults.get("output_dir"), "not settable: the run folder is save_root/exp_name"
        )

    try:
        namespace, unknown = parser.parse_known_args(rest)
    except _ParseError as e:
        msg = str(e)
        if msg.startswith("the following arguments are required"):
            keys = msg.split(":", 1)[1].strip()
            raise ConfigError(
                keys.split(",")[0].strip().lstrip("-"),
                None,
                f"required: set it in the config file or pass {keys.split(',')[0].strip()} VALUE",
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
    _check_run_paths(run_vals["save_root"], run_vals["exp_name"])
    values["output_dir"] = str(Path(run_vals["save_root"]) / run_vals["exp_name"])
    if select_gpu and run_vals.get("gpu") is not None:
        RunArguments(**{f.name: run_vals[f.name] for f in dataclasses.fields(RunArguments)})  # its format first
        apply_gpu(run_vals["gpu"])
    objs = []
    for dtype in dtypes:
        inputs = {
            f.name: (run_vals if dtype is RunArguments else values)[f.name] for f in dataclasses.fields(dtype) if f.init
        }
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
    if restore and not (Path(restore) / "trainer_state.json").is_file():
        raise ConfigError("restore_from", restore, "a checkpoint folder (checkpoint-<step>/ with trainer_state.json)")
    if restore and is_complete(restore) and (problem := checkpoint_problem(restore)):
        raise ConfigError("restore_from", restore, f"an intact checkpoint; this one is damaged ({problem})")
    if cfg.run.fresh_start and restore and cfg.run_dir.resolve() in Path(restore).resolve().parents:
        raise ConfigError(
            "fresh_start",
            True,
            f"not with restore_from inside the run folder {cfg.run_dir} "
            "(fresh_start moves it aside): restore into another exp_name",
        )
    exp_cls.validate(cfg)
    return cfg


def parse_config(argv: list[str] | None = None) -> RunConfig:
    """`parse_config_strict` for scripts: prints one line and exits with status 2 on a bad config."""
    try:
        return parse_config_strict(argv)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
