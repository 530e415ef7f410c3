"""A sweep's grid: axes (lists, ranges, linspace/geomspace, a function's iterable), their cartesian
product, and the job names and seeds derived from each point's values (so editing the grid renames and reseeds
no finished job).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

SWEEP_KEYS = ("sweep", "sweep_metrics", "sweep_seed")


NOT_SWEEPABLE = ("experiment", "exp_name", "save_root", "output_dir")


def _plain(v: Any) -> Any:
    """numpy scalars -> Python numbers, tuples -> lists (job values must be JSON)."""
    if hasattr(v, "item") and not isinstance(v, (list, tuple, dict, str)):
        return v.item()
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def expand_values(key: str, spec: Any) -> list[Any]:
    """One grid axis -> its list of values (see the module docstring for the accepted forms)."""
    import numpy as np

    if isinstance(spec, Mapping):
        if len(spec) == 1 and "range" in spec:
            values = list(range(*spec["range"]))
        elif len(spec) == 1 and "linspace" in spec:
            values = np.linspace(*spec["linspace"]).tolist()
        elif len(spec) == 1 and "geomspace" in spec:
            values = np.geomspace(*spec["geomspace"]).tolist()
        elif "call" in spec and set(spec) <= {"call", "kwargs"}:
            from hf_experiments.core.imports import import_object

            values = list(import_object(spec["call"], f"sweep.{key}.call")(**spec.get("kwargs", {})))
        else:
            raise ValueError(
                f"sweep.{key}={dict(spec)!r} is invalid; expected a list, or one of "
                "{'range': [start, stop, step]}, {'linspace': [a, b, n]}, {'geomspace': [a, b, n]}, "
                "{'call': 'package.module:function', 'kwargs': {...}}"
            )
    elif isinstance(spec, (str, bytes)) or not isinstance(spec, Iterable):
        raise ValueError(f"sweep.{key}={spec!r} is invalid; expected a list of values")
    else:
        values = list(spec)  # lists, tuples, generators, ranges...
    if not values:
        raise ValueError(f"sweep.{key} is empty; expected at least one value")
    return [_plain(v) for v in values]


def expand_grid(grid: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The cartesian product of the axes, first key slowest: [{key: value, ...}, ...]."""
    if not isinstance(grid, Mapping) or not grid:
        raise ValueError(f"sweep={grid!r} is invalid; expected a non-empty object {{key: [values]}}")
    axes = {key: expand_values(key, spec) for key, spec in grid.items()}
    return [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())]


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, list):
        return "-".join(_fmt(x) for x in v)
    return str(v)


def job_name(values: Mapping[str, Any]) -> str:
    """``width=256,trial=0``; characters unsafe in paths or shells become ``_``; long names are shortened."""
    name = ",".join(f"{k}={_fmt(v)}" for k, v in values.items())
    name = re.sub(r"[^A-Za-z0-9._=,+-]", "_", name)
    if len(name) > 120:
        name = name[:100] + "-" + _digest(values)
    return name


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:10]


def derive_job_seed(base_seed: int, values: Mapping[str, Any]) -> int:
    """A 31-bit seed from the base seed and the job's values (independent of grid order and device)."""
    blob = json.dumps({"seed": int(base_seed), "values": values}, sort_keys=True, default=str).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:4], "big") >> 1
