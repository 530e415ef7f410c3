"""Evaluation code; metrics are local `evaluate` modules (`metrics/<name>/<name>.py`), never Hub ones."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import evaluate

METRICS_DIR = Path(__file__).resolve().parent


def load_local_metric(name: str) -> evaluate.EvaluationModule:
    """Load `hf_experiments/compression/metrics/<name>/<name>.py` with `evaluate.load`, offline and in memory."""
    import evaluate

    folder = METRICS_DIR / name
    if not (folder / f"{name}.py").is_file():
        available = sorted(p.name for p in METRICS_DIR.iterdir() if (p / f"{p.name}.py").is_file())
        raise ValueError(f"name={name!r} is not a local metric: available are {available}")
    # keep_in_memory: no Arrow cache files, so parallel evaluations never share (or lock) a cache
    return evaluate.load(str(folder), keep_in_memory=True)


__all__ = ["METRICS_DIR", "load_local_metric"]
