"""Package names imported on first use (PEP 562), so a package's light modules (data generators, loaders) import
without what its models need (torch, transformers)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_getattr(package: str, names: Mapping[str, str]) -> Callable[[str, Any], Any]:
    """A module `__getattr__` for `package`: `names` maps each exported name to the module (relative to `package`
    or absolute) that defines it."""

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(names[name], package), name)

    return __getattr__
