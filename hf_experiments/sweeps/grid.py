"""A sweep's grid: axes (lists, ranges, linspace/geomspace, a function's iterable, generators, and in Python
axes that depend on the values of earlier ones), their cartesian product, and the job names and seeds derived
from each point's values (so editing the grid renames and reseeds no finished job).
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
MAX_JOBS = 100_000  # a grid beyond this is a typo (10^9 jobs once filled the memory before failing)


class Unexpanded(str):
    """The stand-in value of a `call` axis in a dry run, which names its function without calling it."""


def _plain(v: Any) -> Any:
    """numpy scalars -> Python numbers, tuples -> lists (job values must be JSON)."""
    if hasattr(v, "item") and not isinstance(v, (list, tuple, dict, str)):
        return v.item()
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def _numbers(key: str, form: str, args: Any, ints: bool = False) -> list:
    kinds = (int,) if ints else (int, float)
    if (
        not isinstance(args, list)
        or not args
        or not all(isinstance(a, kinds) and not isinstance(a, bool) for a in args)
    ):
        raise ValueError(
            f"sweep.{key}={{{form!r}: {args!r}}} is invalid; expected a list of {'integers' if ints else 'numbers'}"
        )
    return args


def expand_values(key: str, spec: Any, run_user_code: bool = True) -> list[Any]:
    """One grid axis -> its list of values (see the module docstring for the accepted forms). With
    `run_user_code=False` (a dry run) a `call` axis is checked but not called: one `Unexpanded` stand-in."""
    import numpy as np

    if isinstance(spec, Mapping):
        if len(spec) == 1 and "range" in spec:
            values = list(itertools.islice(range(*_numbers(key, "range", spec["range"], ints=True)), MAX_JOBS + 1))
        elif len(spec) == 1 and "linspace" in spec:
            a, b, n = _numbers(key, "linspace", spec["linspace"]) + [None] * (3 - len(spec["linspace"]))
            values = np.linspace(a, b, min(int(n if n is not None else 50), MAX_JOBS + 1)).tolist()
        elif len(spec) == 1 and "geomspace" in spec:
            a, b, n = _numbers(key, "geomspace", spec["geomspace"]) + [None] * (3 - len(spec["geomspace"]))
            values = np.geomspace(a, b, min(int(n if n is not None else 50), MAX_JOBS + 1)).tolist()
        elif "call" in spec and set(spec) <= {"call", "kwargs"}:
            from hf_experiments.core.imports import check_object, import_object

            if not run_user_code:
                check_object(spec["call"], f"sweep.{key}.call")
                return [Unexpanded(f"<values of {spec['call']}>")]
            made = import_object(spec["call"], f"sweep.{key}.call")(**spec.get("kwargs", {}))
            values = list(itertools.islice(made, MAX_JOBS + 1))
        else:
            raise ValueError(
                f"sweep.{key}={dict(spec)!r} is invalid; expected a list, or one of "
                "{'range': [start, stop, step]}, {'linspace': [a, b, n]}, {'geomspace': [a, b, n]}, "
                "{'call': 'package.module:function', 'kwargs': {...}}"
            )
    elif isinstance(spec, (str, bytes)) or not isinstance(spec, Iterable):
        raise ValueError(f"sweep.{key}={spec!r} is invalid; expected a list of values")
    else:
        values = list(itertools.islice(spec, MAX_JOBS + 1))  # lists, tuples, generators, ranges...
    if not values:
        raise ValueError(f"sweep.{key} is empty; expected at least one value")
    if len(values) > MAX_JOBS:
        raise ValueError(f"sweep.{key} has more than {MAX_JOBS:,} values; expected at most {MAX_JOBS:,} jobs")
    return [_plain(v) for v in values]


def expand_grid(grid: Mapping[str, Any], run_user_code: bool = True) -> list[dict[str, Any]]:
    """The cartesian product of the axes, first key slowest: [{key: value, ...}, ...]; at most `MAX_JOBS`.

    An axis may also be a Python callable (the notebook API's dynamic iterables): it is called for each
    combination of the axes before it, with those values it names (``lambda width: [1 / width, 2 / width]``),
    and returns that combination's values (a list, range or generator)."""
    if not isinstance(grid, Mapping) or not grid:
        raise ValueError(f"sweep={grid!r} is invalid; expected a non-empty object {{key: [values]}}")
    fixed = {key: expand_values(key, spec, run_user_code) for key, spec in grid.items() if not _dynamic(spec)}
    n_jobs = 1
    for values in fixed.values():
        n_jobs *= len(values)
    if n_jobs > MAX_JOBS:  # refused by arithmetic before any point is built
        sizes = " x ".join(str(len(v)) for v in fixed.values())
        raise ValueError(f"sweep has {sizes} = {n_jobs:,} jobs; expected at most {MAX_JOBS:,}")
    points: list[dict[str, Any]] = [{}]
    for key, spec in grid.items():
        new: list[dict[str, Any]] = []
        for point in points:
            values = fixed[key] if key in fixed else expand_values(key, _call_axis(key, spec, point), run_user_code)
            new.extend({**point, key: v} for v in values)
            if len(new) > MAX_JOBS:
                raise ValueError(f"sweep has more than {MAX_JOBS:,} jobs; expected at most {MAX_JOBS:,}")
        points = new
    return points


def _dynamic(spec: Any) -> bool:
    return callable(spec) and not isinstance(spec, (Mapping, Iterable))


def _call_axis(key: str, fn: Any, point: Mapping[str, Any]) -> Any:
    from hf_experiments.core.imports import call_with_accepted

    try:
        return call_with_accepted(fn, point)
    except TypeError as e:
        raise ValueError(
            f"sweep.{key}: the function {getattr(fn, '__name__', fn)!r} could not be called with the values of "
            f"the axes before it ({', '.join(point) or 'none'}): {e}"
        ) from None


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
