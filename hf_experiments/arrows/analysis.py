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
