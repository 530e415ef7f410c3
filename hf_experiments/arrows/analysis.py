"""Analysis of arrows-of-time runs: forward/backward comparison, sweeps, sparse-update curves, plots.

Library code behind `trainers/arrows_compare.py`, `trainers/arrows_sparsity_sweep.py` and
`trainers/arrows_sparse_update.py`. Everything reads ordinary run folders (`run_config.json`,
`metrics.json`, `loss_per_position.json`, `checkpoint-*/trainer_state.json`), so results can be recomputed
from finished runs without training again.

`min_rule_weights` explains *why* one direction is harder: a causal model predicting bit t of a
linear-language line can use every bit it has already read, so the relevant difficulty of position t
is the fewest earlier bits whose XOR equals it (noise-free), not just the density of M or M^-1.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hf_experiments.core.plots import figure
from hf_experiments.core.stats import mean_ci

MAX_RULE_BITS = 16  # min_rule_weights enumerates 2^n combinations


# --------------------------------------------------------------------------------------------
# Run folders
# --------------------------------------------------------------------------------------------
@dataclass
class PositionLosses:
    """The final per-position loss of one run (`loss_per_position.json`)."""

    run_dir: Path
    direction: str
    order: np.ndarray  # (L,) character index in the original line of each predicted position
    loss: np.ndarray  # (L,) mean cross-entropy per predicted position, in reading order
    mean: float

    def by_line_position(self) -> np.ndarray:
        """The losses re-indexed by character position in the original (forward) line, shape (L,)."""
        out = np.empty_like(self.loss)
        out[self.order] = self.loss
        return out


def read_json(path: str | Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def load_position_losses(run_dir: str | Path) -> PositionLosses:
    """Read `loss_per_position.json` of a finished arrows run."""
    run_dir = Path(run_dir)
    path = run_dir / "loss_per_position.json"
    if not path.is_file():
        raise ValueError(f"run_dir={str(run_dir)!r} has no loss_per_position.json; pass a finished arrows run folder")
    d = read_json(path)
    return PositionLosses(
        run_dir,
        d["direction"],
        np.asarray(d["order"], dtype=np.int64),
        np.asarray(d["loss_per_position"], dtype=np.float64),
        float(d["mean"]),
    )


def relative_gap(forward: float, backward: float) -> float:
    """(backward - forward) / forward: positive when the backward direction is harder."""
    if forward <= 0:
        raise ValueError(f"forward={forward} is not allowed; the forward loss must be positive")
    return (backward - forward) / forward


def compare_runs(forward_dir: str | Path, backward_dir: str | Path) -> dict[str, Any]:
    """Mean losses, relative gap and both per-position curves of a forward and a backward run."""
    fw, bw = load_position_losses(forward_dir), load_position_losses(backward_dir)
    if len(fw.loss) != len(bw.loss):
        raise ValueError(
            f"forward run has {len(fw.loss)} positions, backward run {len(bw.loss)}; compare runs on the same data"
        )
    return {
        "forward_run": str(fw.run_dir),
        "backward_run": str(bw.run_dir),
        "forward_direction": fw.direction,
        "backward_direction": bw.direction,
        "forward_mean_loss": fw.mean,
        "backward_mean_loss": bw.mean,
        "relative_gap": relative_gap(fw.mean, bw.mean),
        "forward_loss_per_position": fw.loss.tolist(),
        "backward_loss_per_position": bw.loss.tolist(),
        "forward_order": fw.order.tolist(),
        "backward_order": bw.order.tolist(),
    }


def loss_curve(run_dir: str | Path, key: str = "loss") -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of `key` ("loss" = training loss, "eval_loss", ...) from the newest checkpoint's
    `trainer_state.json` log history (the Trainer saves one at the last step)."""
    run_dir = Path(run_dir)
    states = sorted(run_dir.glob("checkpoint-*/trainer_state.json"), key=lambda p: int(p.parent.name.split("-")[1]))
    if not states:
        raise ValueError(f"run_dir={str(run_dir)!r} has no checkpoint-*/trainer_state.json")
    rows = [h for h in read_json(states[-1])["log_history"] if key in h]
    return np.array([h["step"] for h in rows], dtype=np.int64), np.array([h[key] for h in rows], dtype=np.float64)


def mean_std_curves(curves: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, list[float]]:
    """Mean and standard deviation across repeats, on the steps every repeat logged."""
    if not curves:
        raise ValueError("curves is empty; give at least one (steps, values) pair")
    common = curves[0][0]
    for steps, _ in curves[1:]:
        common = np.intersect1d(common, steps)
    stack = np.stack([vals[np.searchsorted(steps, common)] for steps, vals in curves])  # (R, S)
    return {
        "step": common.tolist(),
        "mean": stack.mean(0).tolist(),
        "std": stack.std(0).tolist(),
        "n_repeats": len(curves),
    }


def eval_loss_at(run_dir: str | Path, step: int) -> float:
    """`eval_loss` of the evaluation at `step` (the run folder's `trainer_state.json`, else its newest
    checkpoint's): with a constant learning rate after warm-up, the state at `step` of a longer run is the
    state a run of budget `step` ends in, so one run gives several budgets."""
    run_dir = Path(run_dir)
    checkpoints = run_dir.glob("checkpoint-*/trainer_state.json")
    states = [run_dir / "trainer_state.json", *sorted(checkpoints, key=lambda p: -int(p.parent.name.split("-")[1]))]
    for state in (p for p in states if p.is_file()):
        for h in read_json(state)["log_history"]:
            if "eval_loss" in h and h.get("step") == step:
                return float(h["eval_loss"])
    raise ValueError(f"run_dir={str(run_dir)!r} has no evaluation at step {step}; pass a budget it evaluated at")


def _interval(values: list[float]) -> dict[str, Any]:
    mean, half = mean_ci(values)
    return {"mean": mean, "ci95": [mean - half, mean + half], "values": list(values)}


def compare_seeds(
    forward_dirs: list[str | Path], backward_dirs: list[str | Path], budgets: list[int] | None = None
) -> dict[str, Any]:
    """Forward vs backward over seeds (run i of each list is one seed): per budget the losses, the gap
    backward - forward and the relative gap, each with its mean and 95% t-interval over the paired seeds
    (`core.stats.mean_ci`); per position the mean curve of each direction with its 95% band (final budget).

    `budgets`: steps at which every run evaluated (`eval_loss_at`, which needs the whole validation split
    evaluated, as the arrows configs do); the final evaluation is always the last budget."""
    if len(forward_dirs) != len(backward_dirs) or len(forward_dirs) < 2:
        raise ValueError(
            f"{len(forward_dirs)} forward and {len(backward_dirs)} backward runs; pass the same number, at least 2"
        )
    finals = [compare_runs(f, b) for f, b in zip(forward_dirs, backward_dirs, strict=True)]
    final_step = _check_pairs(forward_dirs, backward_dirs, finals)
    out_budgets = []
    for budget in sorted(b for b in set(budgets or []) if b != final_step):  # the final one comes from the
        fw = [eval_loss_at(d, budget) for d in forward_dirs]  # final evaluation (loss_per_position.json)
        bw = [eval_loss_at(d, budget) for d in backward_dirs]
        out_budgets.append(_budget(budget, fw, bw))
    fw = [r["forward_mean_loss"] for r in finals]
    bw = [r["backward_mean_loss"] for r in finals]
    out_budgets.append(_budget(final_step, fw, bw))
    per_position = {}
    for key in ("forward", "backward"):
        stack = np.array([r[f"{key}_loss_per_position"] for r in finals])  # (seeds, L)
        half = np.array([mean_ci(list(col))[1] for col in stack.T])
        per_position[key] = {"mean": stack.mean(0).tolist(), "ci95_half": half.tolist()}
    return {
        "n_seeds": len(finals),
        "forward_runs": [str(d) for d in forward_dirs],
        "backward_runs": [str(d) for d in backward_dirs],
        "budgets": out_budgets,
        "per_position": per_position,
    }


def _check_pairs(forward_dirs: list, backward_dirs: list, finals: list[dict[str, Any]]) -> int:
    """Every run ended at the same step; pair i has one seed; the lists hold forward and non-forward runs.
    Returns that step."""
    steps = set()
    for i, (f, b) in enumerate(zip(forward_dirs, backward_dirs, strict=True)):
        seeds = []
        for d in (f, b):
            try:
                steps.add(int(read_json(Path(d) / "trainer_state.json")["global_step"]))
                seeds.append(read_json(Path(d) / "run_config.json").get("seed"))
            except (OSError, ValueError, KeyError) as e:
                raise ValueError(f"run_dir={str(d)!r} is not a finished run ({e})") from None
        if seeds[0] != seeds[1]:
            raise ValueError(f"pair {i}: {f} has seed {seeds[0]}, {b} seed {seeds[1]}; list the runs in seed order")
        if finals[i]["forward_direction"] != "forward" or finals[i]["backward_direction"] == "forward":
            raise ValueError(f"pair {i}: {f} is not a forward run or {b} is one; pass --forward / --backward runs")
    if len(steps) != 1:
        raise ValueError(f"the runs ended at different steps {sorted(steps)}; compare runs of one budget")
    return steps.pop()


def _budget(step: int, fw: list[float], bw: list[float]) -> dict[str, Any]:
    return {
        "step": int(step),
        "forward": _interval(fw),
        "backward": _interval(bw),
        "gap": _interval([b - f for f, b in zip(fw, bw, strict=True)]),
        "relative_gap": _interval([relative_gap(f, b) for f, b in zip(fw, bw, strict=True)]),
    }


def sweep_summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per matrix of a sparsity sweep with at least 2 training seeds finished in both directions: mean
    loss per direction, and the relative gap (backward - forward) / forward paired by seed, with its 95%
    t-interval; ordered by k' - k."""
    by_matrix: dict[str, dict[Any, dict[str, float]]] = {}
    meta: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r.get("train_seed") is None:
            continue
        by_matrix.setdefault(r["matrix"], {}).setdefault(r["train_seed"], {})[r["direction"]] = r["mean_token_loss"]
        meta[r["matrix"]] = {k: r[k] for k in ("matrix", "n", "k", "k_inv")}
    out = []
    for matrix, seeds in by_matrix.items():
        pairs = [(v["forward"], v["backward"]) for v in seeds.values() if len(v) == 2]
        if len(pairs) < 2:
            continue
        rel = _interval([relative_gap(f, b) for f, b in pairs])
        out.append(
            {
                **meta[matrix],
                "n_seeds": len(pairs),
                "forward_mean": float(np.mean([f for f, _ in pairs])),
                "backward_mean": float(np.mean([b for _, b in pairs])),
                "relative_gap_mean": rel["mean"],
                "relative_gap_lo": rel["ci95"][0],
                "relative_gap_hi": rel["ci95"][1],
            }
        )
    return sorted(out, key=lambda r: (r["k_inv"] - r["k"], r["matrix"]))


# --------------------------------------------------------------------------------------------
# Linear-language structure
# --------------------------------------------------------------------------------------------
def _all_vectors(n: int) -> np.ndarray:
    return ((np.arange(2**n)[:, None] >> np.arange(n)) & 1).astype(np.int64)  # (2^n, n): bit i = column i


def min_rule_weights(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fewest already-read bits whose XOR gives each predicted output bit (noise-free), per direction.

    Forward reads x then y = M x: y_r = (e_r + b)^T M x + b . y_<r for any b on rows < r; weight |b| + |..|.
    Backward reads y (reversed) then x_{n-1} .. x_0: x_r = c . y + d . x_>r with c^T M = e_r + d; weight
    |c| + |d|. Both arrays are indexed by coordinate r (not reading order). The first backward bit needs a
    full row of M^-1; later bits may get cheaper because earlier x bits are known, which is why k' alone
    overstates the backward difficulty. Enumerates 2^n vectors: n <= MAX_RULE_BITS.
    """
    m = np.asarray(m, dtype=np.int64)
    n = m.shape[0]
    if m.ndim != 2 or m.shape != (n, n) or not 1 <= n <= MAX_RULE_BITS:
        raise ValueError(f"m has shape {m.shape}; need a square matrix with n <= {MAX_RULE_BITS}")
    vecs = _all_vectors(n)  # (2^n, n)
    combos = (vecs @ m) % 2  # (2^n, n): c^T M for every c
    weight = vecs.sum(1)  # (2^n,)
    forward, backward = np.zeros(n, np.int64), np.zeros(n, np.int64)
    for r in range(n):  # n steps, each vectorised over the 2^n combinations
        b_ok = (vecs[:, r:] == 0).all(1)  # b only on rows < r
        e_r = np.zeros(n, np.int64)
        e_r[r] = 1
        forward[r] = (weight + ((vecs + e_r) % 2 @ m % 2).sum(1))[b_ok].min()
        c_ok = (combos[:, :r] == 0).all(1) & (combos[:, r] == 1)
        backward[r] = (weight + combos[:, r + 1 :].sum(1))[c_ok].min()
    return forward, backward


def matrix_stats(m: np.ndarray) -> dict[str, Any]:
    """Name, k, k' and (for small n) the per-direction rule weights of an invertible 0/1 matrix."""
    from .linear_language import extra_ones, gf2_inverse, matrix_name

    m = np.asarray(m, dtype=np.uint8)
    k, k_inv = extra_ones(m), extra_ones(gf2_inverse(m))
    out: dict[str, Any] = {"matrix": matrix_name(len(m), k, k_inv), "n": len(m), "k": k, "k_inv": k_inv}
    if len(m) <= MAX_RULE_BITS:
        fw, bw = min_rule_weights(m)
        out.update(forward_rule_weights=fw.tolist(), backward_rule_weights=bw.tolist())
    return out


def densest_inverse(n: int, k: int, seeds: range) -> tuple[int, np.ndarray]:
    """The seed (and matrix) among `seeds` whose I + k ones has the most extra ones in its inverse."""
    from .linear_language import extra_ones, gf2_inverse, make_sparse_invertible

    best: tuple[int, int, np.ndarray] | None = None
    for seed in seeds:
        m = make_sparse_invertible(n, k, np.random.default_rng(seed))
        k_inv = extra_ones(gf2_inverse(m))
        if best is None or k_inv > best[0]:
            best = (k_inv, seed, m)
    if best is None:
        raise ValueError(f"seeds={seeds!r} is empty; give at least one seed")
    return best[1], best[2]


# --------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------
def plot_compare(result: dict[str, Any], path: str | Path, title: str | None = None) -> Path:
    """Both per-position curves against the position as read (1 = first character after BOS)."""
    with figure(path, figsize=(7, 3.5), dpi=100) as (_, ax):
        for key, colour in (("forward", "tab:blue"), ("backward", "tab:red")):
            loss = np.asarray(result[f"{key}_loss_per_position"])
            ax.plot(
                np.arange(1, len(loss) + 1),
                loss,
                marker=".",
                color=colour,
                label=f"{result[f'{key}_direction']} (mean {result[f'{key}_mean_loss']:.4f})",
            )
        ax.set_xlabel("position as read (1 = first character)")
        ax.set_ylabel("cross-entropy (nats)")
        ax.set_title(title or f"relative gap (backward - forward) / forward = {result['relative_gap']:+.1%}")
        ax.legend()
    return Path(path)


def plot_sweep(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """Final mean loss against k (left) and k' (right), one series per direction."""
    with figure(path, 1, 2, figsize=(10, 3.8), dpi=100, sharey=True) as (_, axes):
        for ax, x_key, label in (
            (axes[0], "k", "k (extra ones of M)"),
            (axes[1], "k_inv", "k' (extra ones of M^-1)"),
        ):
            for direction, colour in (("forward", "tab:blue"), ("backward", "tab:red")):
                pts = sorted((r[x_key], r["mean_token_loss"]) for r in rows if r["direction"] == direction)
                if pts:
                    xs, ys = zip(*pts)
                    ax.plot(xs, ys, "o", color=colour, label=direction, alpha=0.8)
            ax.set_xlabel(label)
            ax.grid(alpha=0.3)
        axes[0].set_ylabel("final mean token loss (nats)")
        axes[0].legend()
    return Path(path)


def plot_mean_std(curves: dict[str, dict[str, list[float]]], path: str | Path, ylabel: str, title: str) -> Path:
    """One mean curve per direction with a +-1 std band (sparse-update adaptation)."""
    colours = {"forward": "tab:blue", "backward": "tab:red"}
    with figure(path, figsize=(7, 3.8), dpi=100) as (_, ax):
        for direction, c in curves.items():
            step, mean, std = (np.asarray(c[k]) for k in ("step", "mean", "std"))
            ax.plot(step, mean, color=colours.get(direction), label=f"{direction} (R={c['n_repeats']})")
            ax.fill_between(step, mean - std, mean + std, color=colours.get(direction), alpha=0.2)
        ax.set_xlabel("fine-tuning step")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.legend()
        ax.grid(alpha=0.3)
    return Path(path)


def plot_compare_seeds(result: dict[str, Any], path: str | Path, title: str | None = None) -> Path:
    """Left: per-position mean curves with 95% bands; right: relative gap per budget (mean, 95% interval,
    every seed a point)."""
    colours = {"forward": "tab:blue", "backward": "tab:red"}
    with figure(path, 1, 2, figsize=(11, 3.8), dpi=100) as (_, (ax, gap_ax)):
        for key, c in result["per_position"].items():
            mean, half = np.asarray(c["mean"]), np.nan_to_num(np.asarray(c["ci95_half"]))
            x = np.arange(1, len(mean) + 1)
            ax.plot(x, mean, marker=".", color=colours[key], label=f"{key} (n={result['n_seeds']})")
            ax.fill_between(x, np.maximum(mean - half, 0.0), mean + half, color=colours[key], alpha=0.25)  # loss >= 0
        ax.set_xlabel("position as read (1 = first character)")
        ax.set_ylabel("cross-entropy (nats), final budget")
        ax.legend()
        ax.grid(alpha=0.3)
        for i, b in enumerate(result["budgets"]):
            rel = b["relative_gap"]
            lo, hi = (100 * v for v in rel["ci95"])
            gap_ax.errorbar(
                [i],
                [100 * rel["mean"]],
                yerr=[[100 * rel["mean"] - lo], [hi - 100 * rel["mean"]]],
                fmt="o",
                color="k",
                capsize=4,
            )
            gap_ax.scatter([i] * len(rel["values"]), [100 * v for v in rel["values"]], color="tab:gray", s=12)
        gap_ax.axhline(0, color="tab:gray", lw=0.8)
        gap_ax.set_xticks(range(len(result["budgets"])), [f"{b['step']} steps" for b in result["budgets"]])
        gap_ax.set_ylabel("(backward - forward) / forward (%)")
        gap_ax.set_title(title or "relative gap: mean, 95% interval, seeds")
        gap_ax.grid(alpha=0.3)
    return Path(path)


def plot_sweep_gap(summary: list[dict[str, Any]], path: str | Path) -> Path:
    """Relative gap (mean and 95% interval over seeds) against k' - k, one colour per k."""
    with figure(path, figsize=(6.5, 3.8), dpi=100) as (_, ax):
        for i, k in enumerate(sorted({r["k"] for r in summary})):
            pts = [r for r in summary if r["k"] == k]
            x = np.array([r["k_inv"] - r["k"] for r in pts], dtype=float)
            mean = np.array([100 * r["relative_gap_mean"] for r in pts])
            lo = np.array([100 * r["relative_gap_lo"] for r in pts])
            hi = np.array([100 * r["relative_gap_hi"] for r in pts])
            ax.errorbar(x, mean, yerr=[mean - lo, hi - mean], fmt="o", capsize=4, color=f"C{i}", label=f"k={k}")
        ax.axhline(0, color="tab:gray", lw=0.8)
        ax.set_xlabel("k' - k (how much denser M^-1 is than M)")
        ax.set_ylabel("(backward - forward) / forward (%)")
        ax.set_title(f"gap per matrix: mean, 95% interval (n={min(r['n_seeds'] for r in summary)}+ seeds)")
        ax.grid(alpha=0.3)
        ax.legend()
    return Path(path)
