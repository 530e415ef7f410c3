"""User code named in a config (`package.module:function` or `file.py:function`): batch functions,
grabs and sweep axes import it here, and call it with the keyword arguments it accepts.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any


def import_object(spec: str, what: str = "function") -> Any:
    """``pkg.mod:name``, ``pkg.mod.name`` or ``path/file.py:name`` -> the object. ValueError if not found."""
    if ":" in spec:
        module_name, attr = spec.rsplit(":", 1)
    elif "." in spec:
        module_name, attr = spec.rsplit(".", 1)
    else:
        raise ValueError(f"{what}={spec!r} is invalid; expected 'package.module:name' or 'file.py:name'")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            if not path.is_file():
                raise FileNotFoundError(module_name)
            mod_spec = importlib.util.spec_from_file_location(f"_hfe_user_{path.stem}", path)
            module = importlib.util.module_from_spec(mod_spec)
            mod_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
        return getattr(module, attr)
    except (ImportError, FileNotFoundError, AttributeError) as e:
        raise ValueError(
            f"{what}={spec!r} could not be imported ({type(e).__name__}: {e}); expected an importable "
            "'package.module:name' or an existing 'file.py:name'"
        ) from None


def call_with_accepted(fn: Callable[..., Any], available: Mapping[str, Any]) -> Any:
    """Call `fn` with the entries of `available` it accepts by name (all of them if it takes ``**kwargs``)."""
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return fn(**available)
    return fn(**{k: v for k, v in available.items() if k in params})
