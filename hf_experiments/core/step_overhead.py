"""Per-step costs in our dependencies that change no result, removed in one place.

accelerate's `AcceleratedOptimizer.step` asks `is_lomo_available()` twice per optimizer step, and that runs
`importlib.util.find_spec("lomo_optim")` over the whole `sys.path` each time: 0.43 against the bare optimizer's
0.16 ms per mlp step (`benchmarks/core/bench_trainer_overhead.py --attribute`, benchmarks/README). Whether a
package is installed does not change while a run trains, so the answer is looked up once per process. A contract
test (`tests/core/test_step_overhead.py`) fails when accelerate stops calling it from `step` (then this goes) or
renames it (then the patch would silently do nothing).
"""

from __future__ import annotations

import functools

import accelerate.optimizer


def cache_package_lookups() -> None:
    """Make `accelerate.optimizer.is_lomo_available` a cached call of the same function (idempotent)."""
    current = accelerate.optimizer.is_lomo_available
    if not hasattr(current, "cache_info"):
        accelerate.optimizer.is_lomo_available = functools.cache(current)
