"""Config files, JSON or YAML, read into one flat mapping with the same strictness.

`--config x.json` and `--config x.yaml` (TRL users bring YAML) give the same dict for the same content: a key given
twice is an error in both (json and PyYAML both keep the last one silently), and YAML scalars follow YAML 1.2's
core schema, as JSON reads numbers (PyYAML follows YAML 1.1: `1e-3` would arrive as a string, `010` as 8, `no` as
false). Every problem is a `ConfigError`: one line naming the file and what is wrong.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from .config import ConfigError

YAML_SUFFIXES = (".yaml", ".yml")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """`json` keeps the last of repeated keys silently; a config that sets one twice is a mistake."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ConfigError(key, value, f"given twice in the config file (also {out[key]!r}); keep one")
        out[key] = value
    return out


# YAML 1.2's core schema for plain scalars (PyYAML implements YAML 1.1, where `1e-3` is a string, `010` is 8,
# `12:30` is 750 and `no` is false): numbers and booleans read as JSON would read them, everything else is text.
_CORE_SCALARS = (
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("tag:yaml.org,2002:int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    (
        "tag:yaml.org,2002:float",
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        "-+0123456789.",
    ),
)
_REPLACED_TAGS = {tag for tag, _, _ in _CORE_SCALARS}


def _core_resolvers(base: type) -> dict[str, list[tuple[str, re.Pattern]]]:
    """`base`'s implicit resolvers with bool/int/float replaced by YAML 1.2 core's (null and the rest kept)."""
    table = {
        k: [(tag, rx) for tag, rx in v if tag not in _REPLACED_TAGS] for k, v in base.yaml_implicit_resolvers.items()
    }
    for tag, pattern, first in reversed(_CORE_SCALARS):  # each inserted first: bool, then int, then float
        for ch in first:
            table.setdefault(ch, []).insert(0, (tag, re.compile(pattern)))
    return table


def _yaml_loader() -> type:
    """PyYAML's safe loader with YAML 1.2 core scalars and repeated keys refused (a `<<: *base` merge may be
    overridden by keys written beside it, as YAML intends)."""
    import yaml

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class Loader(base):  # type: ignore[misc,valid-type]
        pass

    Loader.yaml_implicit_resolvers = _core_resolvers(base)

    def construct_int(loader: Any, node: Any) -> int:
        text = loader.construct_scalar(node)
        return int(text, 8 if text.startswith("0o") else 16 if text.startswith("0x") else 10)

    def mapping(loader: Any, node: Any) -> dict[str, Any]:
        written = [
            (loader.construct_object(k, deep=True), loader.construct_object(v, deep=True))
            for k, v in node.value
            if k.tag != "tag:yaml.org,2002:merge"
        ]
        _no_duplicate_keys(written)  # repeated among the keys written here: an error
        loader.flatten_mapping(node)  # merged keys first, then the written ones (which win)
        return {loader.construct_object(k, deep=True): loader.construct_object(v, deep=True) for k, v in node.value}

    Loader.add_constructor("tag:yaml.org,2002:int", construct_int)
    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    return Loader


def dump_yaml(config: dict[str, Any]) -> str:
    """`config` as YAML that `load_config_file` reads back equal: a string that would read as a number or a
    boolean under the core schema (`"12e4"`, `"yes"` is fine, `"true"` is not) is quoted."""
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    Dumper.yaml_implicit_resolvers = _core_resolvers(yaml.SafeDumper)
    return yaml.dump(config, Dumper=Dumper, sort_keys=False, allow_unicode=True)


def _parse_yaml(text: str, path: str) -> Any:
    import yaml

    try:
        return yaml.load(text, Loader=_yaml_loader())
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError("config", path, f"valid YAML ({e.problem or e.context}{where})") from None
    except yaml.YAMLError as e:
        raise ConfigError("config", path, f"valid YAML ({' '.join(str(e).split())})") from None


def load_config_file(path: str) -> dict[str, Any]:
    """The flat key -> value mapping of a JSON or YAML (`.yaml`/`.yml`) config file; `ConfigError` otherwise."""
    is_yaml = str(path).lower().endswith(YAML_SUFFIXES)
    kind = "YAML" if is_yaml else "JSON"
    if not os.path.isfile(path):
        raise ConfigError("config", path, f"an existing {kind} file (not found)")
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError("config", path, f"a UTF-8 text file (byte {e.start} is not UTF-8)") from None
    if is_yaml:
        raw = _parse_yaml(text, path)
    else:
        try:
            raw = json.loads(text, object_pairs_hook=_no_duplicate_keys)
        except json.JSONDecodeError as e:
            raise ConfigError("config", path, f"valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None
    if not isinstance(raw, dict):
        raise ConfigError("config", path, f"a {kind} mapping of key: value pairs")
    bad = next((k for k in raw if not isinstance(k, str)), None)
    if bad is not None:
        raise ConfigError(str(bad), raw[bad], "a text key (quote it in YAML)")
    return raw
