"""Config files, JSON or YAML, read into one flat mapping with the same strictness.

`--config x.json` and `--config x.yaml` (TRL users bring YAML) give the same dict for the same content: a key given
twice is an error in both (json and PyYAML both keep the last one silently), and the YAML side reads `1e-3` as the
number JSON would (PyYAML follows YAML 1.1, where a float needs a dot, so `1e-3` would arrive as a string). Every
problem is a `ConfigError`: one line naming the file and what is wrong.
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


def _yaml_loader() -> type:
    """PyYAML's safe loader with YAML 1.2 floats (`1e-3`, `1E5`) and duplicate keys refused."""
    import yaml

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class Loader(base):  # type: ignore[misc,valid-type]
        pass

    float_re = re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    )
    # resolvers are per first character; copy the dict so the stock SafeLoader is left as it is
    Loader.yaml_implicit_resolvers = {k: list(v) for k, v in base.yaml_implicit_resolvers.items()}
    for first in "-+0123456789.":
        Loader.yaml_implicit_resolvers.setdefault(first, []).insert(0, ("tag:yaml.org,2002:float", float_re))

    def mapping(loader: Any, node: Any) -> dict[str, Any]:
        loader.flatten_mapping(node)
        pairs = [(loader.construct_object(k, deep=True), loader.construct_object(v, deep=True)) for k, v in node.value]
        return _no_duplicate_keys(pairs)

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    return Loader


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
