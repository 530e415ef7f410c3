"""The Chain-of-Shortcuts figures from ordinary run folders: vanilla, blotched and direct runs over seeds, a layer
sweep, and sampling temperatures (``trainers/blotch_figures.py`` is the command).

Every run is a plain ``trainers/run.py`` run folder under ``save_root`` (a finished one, with ``metrics.json``, is
reused; an interrupted one resumes), so the figures can be redrawn, extended with seeds, or rebuilt after a crash
by rerunning the command. Each figure is a PNG with its CSV; means carry 95% intervals over seeds (Student t).
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from hf_experiments.core import child_runs
from hf_experiments.core.plots import figure, write_csv
from hf_experiments.core.stats import mean_ci

ROLES = ("vanilla", "blotched", "direct")
FIGURES = ("levels", "temperature", "baselines", "layers")


@dataclass(frozen=True)
class RunSpec:
    """One run of the figure set: its folder name, role, config, seed and (layer sweep) depth override."""

    name: str
    role: str
    config: str
    seed: int
    n_layers: int | None = None

    def as_config_run(self) -> child_runs.ConfigRun:
        """This run as a plain config run: the seed, and the layer sweep's depth (which wins over a --set)."""
        values = {"seed": str(self.seed)}
        if self.n_layers is not None:
            values["n_layers"] = str(self.n_layers)
        return child_runs.ConfigRun(self.name, self.config, values)

    def settings(self, overrides: Sequence[str] = ()) -> dict[str, str]:
        """The command-line values of this run, as text (the later entry wins, as on the command line)."""
        return self.as_config_run().settings(overrides)

    def command(self, save_root: str, overrides: Sequence[str] = ()) -> list[str]:
        return self.as_config_run().command(save_root, overrides)

    def check_finished(self, folder: Path, overrides: Sequence[str] = ()) -> None:
        """A finished run is reused only if it was made with this run's values (raises ValueError otherwise)."""
        self.as_config_run().check_finished(folder, overrides)


@dataclass
class FigurePlan:
    """What to train and measure; the defaults are the CPU set (`docs/semantic_blotching.md`)."""

    configs: dict[str, str] = field(
        default_factory=lambda: {
            "vanilla": "configs/blotch_sums2_vanilla.json",
            "blotched": "configs/blotch_sums2.json",
            "direct": "configs/blotch_sums2_direct.json",
        }
    )
    seeds: list[int] = field(default_factory=lambda: [1, 2, 3])  # seed 0 was the configs' pilot
    layers: list[int] = field(default_factory=lambda: [1, 2, 4])
    temperatures: list[float] = field(default_factory=lambda: [0.0, 0.5, 1.0])
    n_eval: int = 1000
    layer_roles: list[str] = field(default_factory=lambda: ["vanilla", "blotched"])

    def runs(self) -> list[RunSpec]:
        """Every role x seed, then the layer sweep (``layer_roles``, first seed); a depth equal to the config's own
        reuses the seed run."""
        out = [RunSpec(f"{role}_seed{s}", role, cfg, s) for role, cfg in self.configs.items() for s in self.seeds]
        for role in self.layer_roles:
            if role not in self.configs:
                continue
            own = config_value(self.configs[role], "n_layers")
            for depth in self.layers:
                if depth != own:
                    out.append(
                        RunSpec(f"{role}_L{depth}_seed{self.seeds[0]}", role, self.configs[role], self.seeds[0], depth)
                    )
        return out

    def layer_run(self, role: str, depth: int) -> str:
        own = config_value(self.configs[role], "n_layers")
        return f"{role}_seed{self.seeds[0]}" if depth == own else f"{role}_L{depth}_seed{self.seeds[0]}"


def config_value(path: str, key: str, default: Any = None) -> Any:
    """A key of a JSON config, or the dataclass default of the blotch arguments when the config leaves it out."""
    cfg = json.loads(Path(path).read_text())
    if key in cfg:
        return cfg[key]
    from .blotch_config import BlotchDataArguments, BlotchModelArguments

    for cls in (BlotchModelArguments, BlotchDataArguments):
        for f in fields(cls):
            if f.name == key:
                return f.default
    return default


def run_missing(specs: Sequence[RunSpec], save_root: str, jobs: int = 1, overrides: Sequence[str] = ()) -> None:
    """Train the figure runs that have no ``metrics.json`` yet (`hf_experiments.core.child_runs.run_missing`)."""
    child_runs.run_missing(specs, save_root, jobs, overrides, desc="blotch figure runs")


# --------------------------------------------------------------------------------------------
# Reading runs
# --------------------------------------------------------------------------------------------
def read_metrics(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "metrics.json").read_text())


def level_rows(folder: Path, split: str = "validation") -> list[dict[str, Any]]:
    """The run's ``blotch_eval.csv`` rows of one split (numbers parsed)."""
    import csv

    with open(folder / "blotch_eval.csv", newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == split]
    return [{k: (v if k in ("split", "blotch_level") else float(v)) for k, v in r.items()} for r in rows]


def headline_level(folder: Path) -> float | None:
    """The blotch level a run's config names for its headline (``bootstrap_blotch_p``, default ``blotch_p_min``)."""
    cfg = json.loads((folder / "run_config.json").read_text())
    if not cfg.get("n_btokens") and cfg.get("blotch_p_min") is None:
        return None
    level = cfg.get("bootstrap_blotch_p")
    return cfg.get("blotch_p_min") if level is None else level


def validation_split(folder: Path) -> Any:
    """The validation problems the run was evaluated on (its dataset folder, from its saved config)."""
    from datasets import load_dataset

    from .blotch_config import BlotchDataArguments
    from .experiment import dataset_name

    cfg = json.loads((folder / "run_config.json").read_text())
    d = BlotchDataArguments(**{f.name: cfg[f.name] for f in fields(BlotchDataArguments) if f.name in cfg})
    path = Path(d.dataset_path) if d.dataset_path else Path(cfg["save_root"]) / "data" / dataset_name(d)
    return load_dataset(str(path))["validation"]


def temperature_rows(folder: Path, temperatures: Sequence[float], n_eval: int, seed: int) -> list[dict[str, Any]]:
    """Accuracy and generated length of the run's saved model at each sampling temperature (headline level)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import hf_experiments.blotch  # noqa: F401 (registers the model with the Auto classes)

    from .evaluation import evaluate_split

    model = AutoModelForCausalLM.from_pretrained(folder / "model").eval()
    tok = AutoTokenizer.from_pretrained(folder / "model")
    val = validation_split(folder)
    val = val.select(range(min(n_eval, len(val))))
    level = headline_level(folder)
    rows = []
    for temp in temperatures:
        torch.manual_seed(seed)
        m = evaluate_split(
            model, tok, list(val["problem"]), list(val["solution"]), list(val["answer"]), level, float(temp)
        )
        rows.append({"temperature": float(temp), "answer_acc": m["answer_acc"], "gen_len": m["gen_len"]})
    return rows


# --------------------------------------------------------------------------------------------
# Tables and figures
# --------------------------------------------------------------------------------------------
def _ci_cols(prefix: str, values: Sequence[float]) -> dict[str, float]:
    mean, half = mean_ci(values)
    return {f"{prefix}_mean": mean, f"{prefix}_ci95": half, f"{prefix}_n": len(values)}


def build_tables(plan: FigurePlan, save_root: str) -> dict[str, list[dict[str, Any]]]:
    """One table per figure (rows as written to the CSVs), from the finished runs."""
    root = Path(save_root)
    tables: dict[str, list[dict[str, Any]]] = {}
    seeds = plan.seeds
    if "blotched" in plan.configs:
        per_seed = [level_rows(root / f"blotched_seed{s}") for s in seeds]
        levels = [r["blotch_level"] for r in per_seed[0]]
        tables["levels"] = [
            {
                "blotch_level": float(level),
                **_ci_cols("answer_acc", [rows[i]["answer_acc"] for rows in per_seed]),
                **_ci_cols("gen_len", [rows[i]["gen_len"] for rows in per_seed]),
                "gt_len": per_seed[0][i]["gt_len"],
            }
            for i, level in enumerate(levels)
        ]
    tables["baselines"] = []
    for role in plan.configs:
        ms = [read_metrics(root / f"{role}_seed{s}") for s in seeds]
        tables["baselines"].append(
            {
                "method": role,
                "blotch_level": headline_level(root / f"{role}_seed{seeds[0]}"),
                **_ci_cols("answer_acc", [m["validation_answer_acc"] for m in ms]),
                **_ci_cols("gen_len", [m["validation_gen_len"] for m in ms]),
            }
        )
    tables["temperature"] = []
    for role in ("vanilla", "blotched"):
        if role not in plan.configs:
            continue
        per_seed = [temperature_rows(root / f"{role}_seed{s}", plan.temperatures, plan.n_eval, s) for s in seeds]
        for i, temp in enumerate(plan.temperatures):
            tables["temperature"].append(
                {
                    "method": role,
                    "temperature": temp,
                    **_ci_cols("answer_acc", [rows[i]["answer_acc"] for rows in per_seed]),
                    **_ci_cols("gen_len", [rows[i]["gen_len"] for rows in per_seed]),
                }
            )
    tables["layers"] = []
    for role in plan.layer_roles:
        if role not in plan.configs:
            continue
        for depth in plan.layers:
            m = read_metrics(root / plan.layer_run(role, depth))
            tables["layers"].append(
                {
                    "method": role,
                    "n_layers": depth,
                    "seed": seeds[0],
                    "answer_acc": m["validation_answer_acc"],
                    "gen_len": m["validation_gen_len"],
                }
            )
    return tables


def comparison(plan: FigurePlan, save_root: str) -> dict[str, Any]:
    """The headline: blotched vs vanilla, paired by seed — length reduction and accuracy difference with 95%
    intervals over seeds."""
    root = Path(save_root)
    van = [read_metrics(root / f"vanilla_seed{s}") for s in plan.seeds]
    blo = [read_metrics(root / f"blotched_seed{s}") for s in plan.seeds]
    shorter = [1 - b["validation_gen_len"] / v["validation_gen_len"] for b, v in zip(blo, van)]
    acc_diff = [b["validation_answer_acc"] - v["validation_answer_acc"] for b, v in zip(blo, van)]
    red, red_ci = mean_ci(shorter)
    diff, diff_ci = mean_ci(acc_diff)
    return {
        "seeds": plan.seeds,
        "blotch_level": headline_level(root / f"blotched_seed{plan.seeds[0]}"),
        "n_validation": int(level_rows(root / f"blotched_seed{plan.seeds[0]}")[0]["n"]),
        "length_reduction": shorter,
        "length_reduction_mean": red,
        "length_reduction_ci95": red_ci,
        "answer_acc_diff": acc_diff,
        "answer_acc_diff_mean": diff,
        "answer_acc_diff_ci95": diff_ci,
        "vanilla_answer_acc": [v["validation_answer_acc"] for v in van],
        "blotched_answer_acc": [b["validation_answer_acc"] for b in blo],
        "vanilla_gen_len": [v["validation_gen_len"] for v in van],
        "blotched_gen_len": [b["validation_gen_len"] for b in blo],
    }


def _err(half: float) -> float:
    return 0.0 if math.isnan(half) else half


def _lines_per_method(rows: list[dict[str, Any]], x_key: str, ax_acc: Any, ax_len: Any) -> None:
    """Accuracy and length against ``x_key``, one line per method; error bars where the rows carry intervals."""
    for method in dict.fromkeys(r["method"] for r in rows):
        sub = [r for r in rows if r["method"] == method]
        x = [r[x_key] for r in sub]
        for ax, key in ((ax_acc, "answer_acc"), (ax_len, "gen_len")):
            if f"{key}_mean" in sub[0]:
                y, err = [r[f"{key}_mean"] for r in sub], [_err(r[f"{key}_ci95"]) for r in sub]
            else:
                y, err = [r[key] for r in sub], None
            ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=method)


def _method_figure(
    folder: Path, name: str, rows: list[dict[str, Any]], xlabel: str, note: str, x_key: str | None = None
) -> list[Path]:
    """``<name>.png`` (accuracy and length against ``x_key``, one line per method) and ``<name>.csv``."""
    with figure(folder / f"{name}.png", 1, 2, figsize=(10, 3.8)) as (fig, (ax_acc, ax_len)):
        _lines_per_method(rows, x_key or name, ax_acc, ax_len)
        ax_acc.set(xlabel=xlabel, ylabel="final-answer accuracy", ylim=(0, 1.02))
        ax_len.set(xlabel=xlabel, ylabel="generated tokens")
        ax_acc.legend(fontsize=8)
        fig.suptitle(f"{xlabel.capitalize()} (validation; {note})")
    return [write_csv(folder / f"{name}.csv", rows), folder / f"{name}.png"]


def draw(tables: dict[str, list[dict[str, Any]]], folder: Path, n_seeds: int) -> list[Path]:
    """Each table as ``<name>.csv`` and ``<name>.png`` in ``folder``; returns the written paths."""
    written = []
    note = f"mean ± 95% CI over {n_seeds} seeds"
    if "levels" in tables:
        rows = tables["levels"]
        x = [r["blotch_level"] for r in rows]
        van = next((r for r in tables["baselines"] if r["method"] == "vanilla"), None)
        with figure(folder / "levels.png", 1, 2, figsize=(10, 3.8)) as (fig, (ax_acc, ax_len)):
            for ax, key, label in ((ax_acc, "answer_acc", "final-answer accuracy"), (ax_len, "gen_len", "tokens")):
                mean = [r[f"{key}_mean"] for r in rows]
                half = [_err(r[f"{key}_ci95"]) for r in rows]
                ax.plot(x, mean, marker="o", label="blotched (blotch tokens)")
                ax.fill_between(x, [m - h for m, h in zip(mean, half)], [m + h for m, h in zip(mean, half)], alpha=0.25)
                if van is not None:
                    ax.axhline(van[f"{key}_mean"], ls="--", color="grey", label="vanilla")
                ax.set(xlabel="blotch level (fraction of steps dropped)", ylabel=label)
            ax_len.plot(x, [r["gt_len"] for r in rows], ls=":", color="black", label="ground truth")
            ax_acc.set_ylim(0, 1.02)
            ax_acc.legend(fontsize=8)
            ax_len.legend(fontsize=8)
            fig.suptitle(f"Accuracy and generated solution length per blotch level (validation; {note})")
        written += [write_csv(folder / "levels.csv", rows), folder / "levels.png"]
    if tables.get("temperature"):
        written += _method_figure(folder, "temperature", tables["temperature"], "sampling temperature", note)
    if tables.get("baselines"):
        rows = tables["baselines"]
        names = [r["method"] for r in rows]
        with figure(folder / "baselines.png", 1, 2, figsize=(9, 3.6)) as (fig, (ax_acc, ax_len)):
            for ax, key, label in ((ax_acc, "answer_acc", "final-answer accuracy"), (ax_len, "gen_len", "tokens")):
                ax.bar(names, [r[f"{key}_mean"] for r in rows], yerr=[_err(r[f"{key}_ci95"]) for r in rows], capsize=4)
                ax.set(ylabel=label)
            ax_acc.set_ylim(0, 1.02)
            fig.suptitle(f"Vanilla, direct and blotched (headline level; {note})")
        written += [write_csv(folder / "baselines.csv", rows), folder / "baselines.png"]
    if tables.get("layers"):
        seed = tables["layers"][0]["seed"]
        written += _method_figure(
            folder, "layers", tables["layers"], "transformer layers", f"one seed, {seed}", "n_layers"
        )
    return written


def make_figures(
    plan: FigurePlan, save_root: str, jobs: int = 1, overrides: Sequence[str] = (), copy_to: str | None = None
) -> dict[str, Any]:
    """Train what is missing, then write every figure into ``<save_root>/figures`` (and ``copy_to``)."""
    run_missing(plan.runs(), save_root, jobs, overrides)
    tables = build_tables(plan, save_root)
    out = Path(save_root) / "figures"
    written = draw(tables, out, len(plan.seeds))
    summary = comparison(plan, save_root) if {"vanilla", "blotched"} <= set(plan.configs) else {}
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    if copy_to:
        Path(copy_to).mkdir(parents=True, exist_ok=True)
        for path in written:
            shutil.copy(path, Path(copy_to) / f"blotch_{Path(path).name}")
    return summary
