"""Compression methods side by side: learned compression tokens, the mean-pooling baseline and LoRA-adapted
compression trained on the same backbone and data, as one table and one plot (`trainers/cmp_methods.py`).

Each method is an ordinary run folder (`<save_root>/<method>_seed<s>`) of one base config with the method's keys
set, so a rerun reuses finished runs and resumes interrupted ones. With one seed a row's interval is that run's
bootstrap over documents (evaluation noise); with several seeds it is the t-interval over seeds (training noise).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hf_experiments.core.child_runs import ConfigRun, run_missing
from hf_experiments.core.plots import figure, write_csv
from hf_experiments.core.stats import mean_ci

# The keys that make each method; everything else comes from the base config.
METHODS: dict[str, dict[str, str]] = {
    "tokens": {"pooling": "tokens", "train_mode": "embeddings"},
    "mean": {"pooling": "mean", "train_mode": "embeddings"},
    "lora": {"pooling": "tokens", "train_mode": "lora"},
}
LABELS = {
    "tokens": "compression tokens",
    "mean": "mean pooling (baseline)",
    "lora": "compression tokens + LoRA",
}
# Columns of the table: (metrics.json key, interval keys of a single run or None)
_COLUMNS = {
    "low_loss": None,
    "pred_loss": None,
    "high_loss": None,
    "low_minus_pred": ("low_minus_pred_ci_low", "low_minus_pred_ci_high"),
    "gap_recovered": ("gap_recovered_ci_low", "gap_recovered_ci_high"),
}


def method_runs(config: str, methods: Sequence[str], seeds: Sequence[int]) -> list[ConfigRun]:
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"methods {unknown} are unknown; allowed: {sorted(METHODS)}")
    return [ConfigRun(f"{m}_seed{s}", config, {**METHODS[m], "seed": str(s)}) for m in methods for s in seeds]


def _metrics(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "metrics.json").read_text())


def method_rows(save_root: str | Path, methods: Sequence[str], seeds: Sequence[int]) -> list[dict[str, Any]]:
    """One row per method: each column's mean over seeds with its 95% interval (`<col>_ci_low/high`)."""
    rows = []
    for method in methods:
        runs = [_metrics(Path(save_root) / f"{method}_seed{s}") for s in seeds]
        for seed, run in zip(seeds, runs):
            missing = [c for c in _COLUMNS if c not in run]
            if missing:
                raise ValueError(
                    f"{Path(save_root) / f'{method}_seed{seed}' / 'metrics.json'} lacks {missing}: "
                    "not a compression run with seq_len >= 2"
                )
        row: dict[str, Any] = {"method": method, "label": LABELS[method], "seeds": len(runs)}
        for col, ci_keys in _COLUMNS.items():
            values = [float(r[col]) for r in runs]
            mean, half = mean_ci(values)
            row[col] = mean
            if len(runs) > 1:
                row[f"{col}_ci_low"], row[f"{col}_ci_high"] = mean - half, mean + half
            elif ci_keys is not None:
                row[f"{col}_ci_low"], row[f"{col}_ci_high"] = (float(runs[0].get(k, math.nan)) for k in ci_keys)
            else:
                row[f"{col}_ci_low"] = row[f"{col}_ci_high"] = math.nan
        row["gap_degenerate"] = max(float(r.get("gap_degenerate", 0.0)) for r in runs)
        row["num_windows"] = float(runs[0].get("num_windows", math.nan))
        rows.append(row)
    return rows


def _interval(row: dict[str, Any], col: str, percent: bool) -> str:
    lo, hi = row[f"{col}_ci_low"], row[f"{col}_ci_high"]
    value = f"{row[col]:.1%}" if percent else f"{row[col]:.3f}"
    if math.isnan(lo):
        return value
    return f"{value} [{lo:.1%}, {hi:.1%}]" if percent else f"{value} [{lo:.3f}, {hi:.3f}]"


def markdown_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| method | low | pred | high | low − pred [95% CI] | gap recovered [95% CI] | seeds |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        gap = _interval(r, "gap_recovered", True) + (" (degenerate)" if r["gap_degenerate"] else "")
        lines.append(
            f"| {r['label']} | {r['low_loss']:.3f} | {r['pred_loss']:.3f} | {r['high_loss']:.3f} | "
            f"{_interval(r, 'low_minus_pred', False)} | {gap} | {r['seeds']} |"
        )
    return "\n".join(lines) + "\n"


def plot_methods(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """Left: pred loss per method between the low and high references; right: gap recovered with intervals."""
    names = [r["method"] for r in rows]
    xs = list(range(len(rows)))

    def errors(col: str) -> list[list[float]]:
        lo = [r[col] - r[f"{col}_ci_low"] if not math.isnan(r[f"{col}_ci_low"]) else 0.0 for r in rows]
        hi = [r[f"{col}_ci_high"] - r[col] if not math.isnan(r[f"{col}_ci_high"]) else 0.0 for r in rows]
        return [lo, hi]

    with figure(path, 1, 2, figsize=(10, 3.6), dpi=100) as (fig, (ax_loss, ax_gap)):
        ax_loss.bar(xs, [r["pred_loss"] for r in rows], color="tab:blue", label="pred (compressed context)")
        # low - pred's interval, drawn around pred (low is the same for every method)
        ax_loss.errorbar(xs, [r["pred_loss"] for r in rows], yerr=errors("low_minus_pred")[::-1], fmt="none", color="k")
        ax_loss.axhline(rows[0]["low_loss"], color="tab:red", ls="--", label="low (no context)")
        ax_loss.axhline(rows[0]["high_loss"], color="tab:green", ls="--", label="high (full context)")
        top = max(r["low_loss"] for r in rows)
        bottom = min(r["high_loss"] for r in rows)
        margin = max(top - bottom, 1e-3)
        ax_loss.set_ylim(bottom - 0.6 * margin, top + 0.4 * margin)
        ax_loss.set_xticks(xs, names)
        ax_loss.set_ylabel("cross-entropy on the predicted tokens (nats)")
        ax_loss.legend(fontsize=8)
        ax_gap.bar(xs, [100 * r["gap_recovered"] for r in rows], color="tab:purple")
        ax_gap.errorbar(
            xs,
            [100 * r["gap_recovered"] for r in rows],
            yerr=[[100 * v for v in side] for side in errors("gap_recovered")],
            fmt="none",
            color="k",
            capsize=4,
        )
        ax_gap.axhline(100, color="grey", lw=0.8)
        ax_gap.set_xticks(xs, names)
        ax_gap.set_ylabel("gap recovered (%), 95% CI")
        seeds = rows[0]["seeds"]
        fig.suptitle(
            f"compression methods on one backbone and data ({seeds} seed{'s' * (seeds > 1)}; "
            + ("interval over seeds)" if seeds > 1 else "interval: bootstrap over documents)"),
            fontsize=10,
        )
    return Path(path)


def compare_methods(
    config: str,
    save_root: str | Path,
    methods: Sequence[str] = tuple(METHODS),
    seeds: Sequence[int] = (0,),
    jobs: int = 1,
    overrides: Sequence[str] = (),
) -> dict[str, Path]:
    """Train the missing runs, then write `<save_root>/methods.{csv,md,png}`; return their paths."""
    runs = method_runs(config, methods, seeds)
    run_missing(runs, str(save_root), jobs, overrides, desc="compression method runs")
    rows = method_rows(save_root, methods, seeds)
    root = Path(save_root)
    out = {
        "csv": write_csv(root / "methods.csv", rows),
        "md": root / "methods.md",
        "png": plot_methods(rows, root / "methods.png"),
    }
    out["md"].write_text(markdown_table(rows))
    return out
