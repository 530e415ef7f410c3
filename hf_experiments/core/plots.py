"""Writing results the same way for every experiment: rows as a CSV file (also the Trainer's log history as rows
of steps), and matplotlib figures as PNG files.

Figures are `matplotlib.figure.Figure` objects (no pyplot, so no global backend and no display are needed, and
nothing stays open after saving); parent folders are made on the way.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def write_csv(path: str | os.PathLike, rows: Sequence[dict[str, Any]], fields: Sequence[str] | None = None) -> Path:
    """`rows` (dicts) as CSV with a header: `fields` in that order, default the first row's keys."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(fields if fields is not None else rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def log_history_rows(log_history: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> list[dict[str, Any]]:
    """The Trainer's log history (`trainer.state.log_history`) as one row per logged step that has any of `keys`:
    ``{"step": s, key: value or None, ...}``, the entries of one step (training log, evaluations) merged, in step
    order; for the curves of a run over its steps."""
    by_step: dict[int, dict[str, Any]] = {}
    for entry in log_history:
        found = {k: entry[k] for k in keys if isinstance(entry.get(k), (int, float))}
        if found and "step" in entry:
            by_step.setdefault(int(entry["step"]), {}).update(found)
    return [{"step": step, **{k: values.get(k) for k in keys}} for step, values in sorted(by_step.items())]


@contextmanager
def figure(
    path: str | os.PathLike,
    nrows: int = 1,
    ncols: int = 1,
    figsize: tuple[float, float] = (6, 3.5),
    dpi: int = 120,
    **subplots: Any,
) -> Iterator[tuple[Any, Any]]:
    """`with figure(path, 1, 2) as (fig, axes): ...` draws on `axes` (as `plt.subplots` returns them); on leaving
    the block the figure is laid out tightly and saved to `path` (nothing is written if the block raised)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    axes = fig.subplots(nrows, ncols, **subplots)
    yield fig, axes
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
