"""hf_experiments: five research training setups on the Hugging Face `Trainer`.

Importing the package registers its models with the Auto classes, so `AutoModel*.from_pretrained(path)`
loads any model this package saved. A saved folder also carries its configuration and modeling code (`auto_map`),
so where the package is not installed it loads with `trust_remote_code=True`.

The registration needs transformers (and torch); the data generators do not. So it happens as soon as both this
package and transformers are imported, in either order: now, when transformers already is; otherwise once
transformers has been imported and no module of this package is half-way through its own import (an import hook
that times it; registering inside a module's import would read names it has not defined yet). Importing
`hf_experiments.arrows.primes` in a generator that never imports transformers then imports no torch either.
"""

from __future__ import annotations

import importlib
import importlib.abc
import sys
from typing import Any

__version__ = "0.1.0"

# Each experiment package's `registration.register()` registers its model classes.
_MODEL_PACKAGES = ("arrows", "blotch", "compression", "mlp", "recurrent")
_state = {"done": False, "pending": False, "depth": 0}  # depth: modules of this package being imported now


def register_models() -> None:
    """Register every model of the package with the Auto classes (idempotent)."""
    if _state["done"]:
        return
    _state["done"] = True
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _RegistrationHook)]
    for name in _MODEL_PACKAGES:
        importlib.import_module(f"{__name__}.{name}.registration").register()


def _register_when_ready() -> None:
    if _state["pending"] and _state["depth"] == 0 and "transformers" in sys.modules:
        _state["pending"] = False
        register_models()


class _RegistrationHook(importlib.abc.MetaPathFinder):
    """Wraps the import of `transformers` (after it: registration due) and of this package's modules (counted
    while they run, so registration waits until the outermost one is complete). Removed once registered."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        ours = fullname.startswith(__name__ + ".")
        if not ours and fullname != "transformers":
            return None
        spec = None
        for finder in sys.meta_path:  # the lookup the import system would do without this hook
            if finder is not self and hasattr(finder, "find_spec"):
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    break
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        run = spec.loader.exec_module

        def exec_module(module: Any) -> None:
            if ours:
                _state["depth"] += 1
                try:
                    run(module)
                finally:
                    _state["depth"] -= 1
            else:
                run(module)
                _state["pending"] = True
            _register_when_ready()

        spec.loader.exec_module = exec_module  # this spec's own loader (one per found module)
        return spec


if "transformers" in sys.modules:
    register_models()
elif not any(isinstance(f, _RegistrationHook) for f in sys.meta_path):
    sys.meta_path.insert(0, _RegistrationHook())
