"""A sweep's results: one row per job in `results.parquet` / `results.csv`, and plots of each metric
against each swept value (mean over trials, standard deviation as error bars).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hf_experiments.core.runner import PREEMPTED_EXIT_CODE

from .plan import Job, Sweep


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flatten(v, f"{prefix}{k}/"))
        elif not isinstance(v, list):
            out[f"{prefix}{k}"] = v
    return out


def job_status(job: Job, code: int | None = None) -> str:
    if job.finished:
        return "finished"
    if code == PREEMPTED_EXIT_CODE:
        return "preempted"
    if code is not None and code != 0:
        return "failed"
    return "incomplete" if job.run_dir.exists() else "pending"


def collect_results(sweep: Sweep, codes: Mapping[str, int] | None = None):
    """One row per job (swept values, job, seed, status, metrics); writes results.parquet and results.csv."""
    import pandas as pd

    rows = []
    for job in sweep.jobs:
        row: dict[str, Any] = {k: (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in job.values.items()}
        row.update(job=job.name, seed=job.seed, status=job_status(job, (codes or {}).get(job.name)))
        if job.finished:
            metrics = json.loads((job.run_dir / "metrics.json").read_text())
            row.update({k: v for k, v in _flatten(metrics).items() if k not in row})
        rows.append(row)
    df = pd.DataFrame(rows)
    for col in df.columns:  # parquet needs one type per column
        kinds = {type(v) for v in df[col] if v is not None and not (isinstance(v, float) and math.isnan(v))}
        if len(kinds) > 1 and not kinds <= {int, float, bool}:
            df[col] = df[col].map(lambda v: None if v is None else str(v))
    sweep.dir.mkdir(parents=True, exist_ok=True)
    df.to_parquet(sweep.dir / "results.parquet", index=False)
    df.to_csv(sweep.dir / "results.csv", index=False)
    return df


def plot_results(sweep: Sweep, df) -> list[Path]:
    """For each metric and each numeric swept key: metric vs key, mean over trials (std as error bars),
    one line per combination of the other swept values. Returns the written PNG paths."""
    import numpy as np
    import pandas as pd

    from hf_experiments.core.plots import figure

    done = df[df["status"] == "finished"] if "status" in df else df
    keys = [k for k in sweep.swept_keys() if k != "trial"]
    out: list[Path] = []
    for metric in sweep.metrics:
        if metric not in done or not pd.api.types.is_numeric_dtype(done[metric]):
            continue
        for x in keys:
            if not pd.api.types.is_numeric_dtype(done[x]) or done[x].nunique() < 2:
                continue
            others = [k for k in keys if k != x]
            path = sweep.dir / "plots" / f"{re.sub(r'[^A-Za-z0-9._=-]', '_', metric)}_vs_{x}.png"
            with figure(path, figsize=(6, 4)) as (_, ax):
                groups = done.groupby(others, dropna=False) if others else [((), done)]
                for label, sub in groups:
                    stats = sub.groupby(x)[metric].agg(["mean", "std", "count"]).reset_index()
                    label = label if isinstance(label, tuple) else (label,)
                    text = ", ".join(f"{k}={v}" for k, v in zip(others, label)) or metric
                    ax.errorbar(stats[x], stats["mean"], yerr=stats["std"].fillna(0), marker="o", capsize=3, label=text)
                xs = done[x].to_numpy(dtype=float)
                if (xs > 0).all() and xs.max() / xs.min() >= 10:
                    ax.set_xscale("log", base=2 if np.allclose(np.log2(xs), np.round(np.log2(xs))) else 10)
                ys = done[metric].to_numpy(dtype=float)
                ys = ys[np.isfinite(ys)]
                if len(ys) and (ys > 0).all() and ys.max() / ys.min() >= 100:
                    ax.set_yscale("log")
                n_trials = done["trial"].nunique() if "trial" in done else 1
                ax.set_xlabel(x)
                ax.set_ylabel(metric)
                ax.set_title(
                    f"{sweep.name}: {metric} vs {x}"
                    + (f" (mean ± std over {n_trials} trials)" if n_trials > 1 else ""),
                    fontsize=9,
                )
                ax.legend(fontsize=7)
            out.append(path)
    return out
