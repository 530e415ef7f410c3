"""Convert an original project's config file into ours (`hfe convert`, `trainers/convert_config.py`).

    hfe convert hyperparameters.json --experiment cmp -o configs/my_cmp.json

Reads the whole file (a flat `hyperparameters.json`, the arrows-of-time nested `TrainParams/*.json`, modelscape's
upper-case names, the Csordas framework's `-name value` options as keys) and decides every key: ours or a seed
name (renamed, `core.seed_names`), dropped with a note saying what replaces it, or refused with the reason. Every
key it cannot convert is reported at once, one line each (exit 2, nothing written), so moving a file over is one
pass, not a fix-and-rerun loop. The result is then validated exactly as a run would validate it (data included:
a `dataset_path` that does not fit the config is a config error here too).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import ConfigError, RunArguments
from .registry import available_experiments, get_experiment
from .seed_names import (
    EVAL_INTERVAL_NAMES,
    SEED_ALIASES,
    SEED_DROPPED,
    SEED_UNSUPPORTED,
    translate_value,
)

# The arrows-of-time files nest their keys in these sections.
SECTIONS = ("model_params", "training_params", "optim_params")


@dataclass
class Conversion:
    """A converted config: our keys, one note per renamed or dropped key, and every key that could not convert."""

    config: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    errors: list[ConfigError] = field(default_factory=list)
    kinds: dict[str, str] = field(default_factory=dict)  # original key -> kept / renamed / dropped / refused


def config_keys(experiment: str) -> set[str]:
    """Every key a config of `experiment` may set (the fields of its four argument dataclasses)."""
    exp = get_experiment(experiment)
    dtypes = (RunArguments, exp.model_args, exp.data_args, exp.training_args)
    return {f.name for d in dtypes for f in dataclasses.fields(d) if f.init}


# Seed keys `_seed_value_rule` decides (modelscape's upper-case spellings of them are lower-cased first).
_VALUE_RULE_KEYS = (
    "backwards",
    "checkpt_mod",
    "save_every",
    "save_interval",
    "seq_len",
    "model_type",
    "mul_space",
    "eq_space",
    "num_trials",
    "otherreturns",
)


def _seed_value_rule(key: str, value: Any, experiment: str) -> tuple[dict[str, Any], str] | None:
    """Seed keys whose conversion depends on the value or the experiment: (our keys, note), or None when the
    generic tables decide. Raises ConfigError when the value has no counterpart."""
    if key == "backwards":
        direction = "backward" if value else "forward"
        return {"direction": direction}, f"backwards={value!r} -> direction={direction!r}"
    if key in ("checkpt_mod", "save_every", "save_interval") and value is None:
        return {}, f"dropped {key}=None: checkpoints every save_steps (default 200) keep the run resumable"
    if key == "seq_len" and experiment == "blotch":
        return {}, (
            f"dropped seq_len={value!r}: a blotch row is as long as its problem and solution "
            "(max_posencs bounds it; a row longer than max_posencs is a config error)"
        )
    if key == "model_type" and experiment == "blotch":
        name = str(value)
        if "blotch" in name.lower():
            return {}, (
                f"dropped model_type={name!r}: the blotch-token model is the transformer with n_btokens blotch "
                "tokens, on whenever blotch_p_min and blotch_p_max are set"
            )
        if "transformer" in name.lower():
            return {}, f"dropped model_type={name!r}: the model is the transformer (d_model, n_heads, n_layers)"
        raise ConfigError(
            key,
            value,
            "not supported because only the transformer (TransformerModel) and its blotch-token form "
            "(BlotchTokenModel) are implemented",
        )
    if key in ("mul_space", "eq_space"):
        default = {"mul_space": " ", "eq_space": "   "}[key]
        if value == default:
            return {}, f"dropped {key}={value!r}: the prime-product line format is the original's default"
        raise ConfigError(
            key, value, f"{default!r} (not supported because the line format is fixed at the original's default)"
        )
    if key == "num_trials":
        if value in (1, None):
            return {}, f"dropped num_trials={value!r}: one run is one trial (the trial key picks which)"
        raise ConfigError(
            key,
            value,
            "not supported in one run because a run is one trial: add "
            + json.dumps({"sweep": {"trial": {"range": [0, value]}}})[1:-1]
            + " and run it as a sweep (hfe sweep)",
        )
    if (
        key == "otherreturns"
        and isinstance(value, Mapping)
        and all(isinstance(v, str) and ":" in v for v in value.values())
    ):
        grabs = [f"{alias}={spec}" for alias, spec in value.items()]
        return {"grabs": grabs}, f"otherreturns -> grabs {grabs} (functions named by import path)"
    return None


def _unknown(key: str, value: Any, experiment: str, valid: set[str], others: dict[str, set[str]]) -> ConfigError:
    """The one-line error of a key with no conversion: where it belongs, or the closest valid name."""
    homes = sorted(name for name, keys in others.items() if key in keys)
    if homes:
        return ConfigError(
            key,
            value,
            f"unknown key for experiment {experiment!r}: it is a key of {', '.join(homes)} "
            f"(convert with --experiment {homes[0]})",
        )
    candidates = sorted(valid | set(SEED_ALIASES))
    close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.75)
    if close and close[0] in SEED_ALIASES:
        hint = f"did you mean {close[0]!r} (the original's name for {SEED_ALIASES[close[0]][0]!r})?"
    elif close:
        hint = f"did you mean {close[0]!r}?"
    else:
        hint = f"see `hfe run --experiment {experiment} --help` for valid keys"
    return ConfigError(key, value, f"unknown key for experiment {experiment!r}; {hint}")


def _flatten(raw: Mapping[str, Any], conv: Conversion) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in raw.items():
        items = value.items() if key in SECTIONS and isinstance(value, Mapping) else [(key, value)]
        for k, v in items:
            k = str(k).lstrip("-")  # the Csordas framework's options are written `-lr`
            if k in flat and flat[k] != v:
                conv.errors.append(ConfigError(k, v, f"given twice (also {flat[k]!r}); keep one"))
            flat[k] = v
    return flat


def infer_experiment(raw: Mapping[str, Any]) -> str | None:
    """The experiment a file names (`experiment`, the Csordas framework's `task`) or its format implies."""
    for key in ("experiment", "task", "-task"):
        if raw.get(key) in available_experiments():
            return raw[key]
    if any(isinstance(raw.get(s), Mapping) for s in SECTIONS):
        return "arrows"
    return None


def convert(raw: Mapping[str, Any], experiment: str) -> Conversion:
    """Decide every key of an original config for `experiment`; nothing is validated beyond the keys."""
    conv = Conversion()
    flat = _flatten(raw, conv)
    valid = config_keys(experiment)
    others = {name: config_keys(name) - valid for name in available_experiments() if name != experiment}
    out: dict[str, Any] = {}
    given: dict[str, str] = {}  # our key -> the original key that set it

    def put(src: str, target: str, value: Any) -> None:
        if target in out and out[target] != value:
            conv.errors.append(
                ConfigError(
                    src, value, f"sets {target!r}, which {given[target]!r} also sets (to {out[target]!r}); keep one"
                )
            )
        out[target], given[target] = value, src

    loops_per_epoch: tuple[str, Any] | None = None  # n_train_loops: the original validated after each "epoch"
    for key, value in flat.items():
        if key.lower() == "n_train_loops" and "n_train_loops" not in valid:
            loops_per_epoch = (key, value)
            conv.kinds[key] = "renamed"
            continue
        if key in ("experiment", "task"):
            if value != experiment:
                conv.errors.append(
                    ConfigError(
                        key,
                        value,
                        f"{experiment!r}, the experiment converted to (experiments: "
                        + ", ".join(available_experiments())
                        + ")",
                    )
                )
            conv.kinds[key] = "kept"
            continue
        name = key
        if key not in valid and key.lower() != key:  # modelscape's upper-case names
            lower = key.lower()
            known = (SEED_ALIASES, SEED_DROPPED, SEED_UNSUPPORTED, _VALUE_RULE_KEYS)
            if lower in valid or any(lower in table for table in known):
                name = lower
                if lower in valid:
                    conv.notes.append(f"{key} -> {lower}")
        value = translate_value(name, value)
        try:
            rule = None if name in valid else _seed_value_rule(name, value, experiment)
        except ConfigError as e:
            conv.errors.append(ConfigError(key, e.value, e.allowed))  # named as the file spells it
            conv.kinds[key] = "refused"
            continue
        if name in valid and name not in SEED_ALIASES and name not in SEED_DROPPED:  # gpu: a launch choice
            put(key, name, value)
            conv.kinds[key] = "kept"
        elif rule is not None:
            keys, note = rule
            for target, v in keys.items():
                put(key, target, v)
            conv.notes.append(note)
            conv.kinds[key] = "renamed" if keys else "dropped"
        elif name in SEED_ALIASES:
            target, why = SEED_ALIASES[name]
            put(key, target, value)
            conv.notes.append(f"{key} -> {target}" + (f" ({why})" if why else ""))
            conv.kinds[key] = "renamed"
        elif name in SEED_DROPPED:
            conv.notes.append(f"dropped {key}={value!r}: {SEED_DROPPED[name]}")
            conv.kinds[key] = "dropped"
        elif name in SEED_UNSUPPORTED:
            conv.errors.append(ConfigError(key, value, f"not supported because {SEED_UNSUPPORTED[name]}"))
            conv.kinds[key] = "refused"
        else:
            conv.errors.append(_unknown(key, value, experiment, valid, others))
            conv.kinds[key] = "unknown"
    if loops_per_epoch is not None:
        key, value = loops_per_epoch
        if "eval_steps" in out:
            conv.kinds[key] = "dropped"
            conv.notes.append(f"dropped {key}={value!r}: the validation interval is {given['eval_steps']}'s")
        else:
            put(key, "eval_steps", value)
            conv.notes.append(
                f"{key} -> eval_steps (the original validated after every {key} training loops, its 'epoch'; "
                "an epoch here is one pass over the data)"
            )
    interval = given.get("eval_steps") if given.get("eval_steps") in (*EVAL_INTERVAL_NAMES, "n_train_loops") else None
    if interval is not None and "eval_strategy" not in out:
        out["eval_strategy"] = "steps"
        conv.notes.append(f"{interval} is an evaluation interval -> eval_strategy='steps' (evaluation on)")
    complete = getattr(get_experiment(experiment), "complete_converted", None)
    if complete is not None and not conv.errors:  # the experiment fills what the original took from its data
        try:
            extra, notes = complete(dict(out))
        except ConfigError as e:
            conv.errors.append(e)
        else:
            out.update(extra)
            conv.notes.extend(notes)
    conv.config = {"experiment": experiment, **out}
    return conv


def _load(path: str) -> dict[str, Any]:
    """The original file: a JSON (or YAML) object, read as a config file is (`core.config_files`: a repeated key
    is an error). Raises ConfigError (one line, named `source`) otherwise."""
    from .config_files import load_config_file

    try:
        return load_config_file(path)
    except ConfigError as e:
        if e.key == "config":
            raise ConfigError("source", path, e.allowed) from None
        raise


def validate(config: dict[str, Any], stem: str) -> None:
    """Parse the converted config exactly as a run would (keys, values, the experiment's checks, its data);
    raises ConfigError. Nothing is written outside a temporary folder."""
    from .parsing import parse_config_strict

    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / f"{stem}.json"
        probe.write_text(json.dumps(config), encoding="utf-8")
        parse_config_strict(["--config", str(probe)])


def main(argv: list[str] | None = None) -> int:
    """`hfe convert SOURCE [--experiment NAME] [-o OUT]`: exit 0 converted, 2 a key or value that does not convert
    (every one listed, one line each; nothing written)."""
    ap = argparse.ArgumentParser(
        prog="hfe convert", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("source", help="the original config file (hyperparameters.json, TrainParams/*.json, ...)")
    ap.add_argument(
        "--experiment",
        help="registered experiment, e.g. cmp or arrows (default: the file's experiment/task, or arrows for "
        "the nested TrainParams format)",
    )
    ap.add_argument("-o", "--output", help="where to write the converted config, .json or .yaml (default: print it)")
    args = ap.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        raw = _load(args.source)
        experiment = args.experiment or infer_experiment(raw)
        names = available_experiments()
        if experiment not in names:
            raise ConfigError("experiment", experiment, "required: --experiment one of " + ", ".join(names))
        conv = convert(raw, experiment)
        if conv.errors:
            for e in conv.errors:
                print(f"config error: {e}", file=sys.stderr)
            return 2
        validate(conv.config, Path(args.output or args.source).stem)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    for note in conv.notes:
        print(f"# {note}", file=sys.stderr)
    if args.output and Path(args.output).suffix.lower() in (".yaml", ".yml"):
        from .config_files import dump_yaml

        text = dump_yaml(conv.config)
    else:
        text = json.dumps(conv.config, indent=2) + "\n"
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
