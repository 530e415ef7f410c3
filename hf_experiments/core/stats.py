"""Means with 95% intervals for results over seeds (Student's t), shared by the experiments' figures and tables.

Written here because scipy is not a dependency of this package: only the two-sided 95% t quantile is needed, and
it is tabulated below (from the t distribution) and expanded beyond 30 degrees of freedom.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

# two-sided 95% quantiles t_{0.975, df}, df = 1..30
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def t975(df: int) -> float:
    """The two-sided 95% Student-t quantile for ``df`` degrees of freedom (tabulated to 30, then the
    Cornish-Fisher expansion around the normal quantile, within 1e-4 of the exact value)."""
    if df < 1:
        raise ValueError(f"df={df} is not allowed; use at least 1 degree of freedom (two values)")
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def mean_ci(values: Sequence[float]) -> tuple[float, float]:
    """(mean, half-width of its 95% interval); the half-width is NaN for a single value."""
    n = len(values)
    if n == 0:
        raise ValueError("values is empty; pass at least one value")
    mean = sum(values) / n
    if n == 1:
        return mean, math.nan
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, t975(n - 1) * sd / math.sqrt(n)


def fmt_ci(values: Sequence[float], digits: int = 3) -> str:
    """``"0.985 ± 0.006"`` (or the bare mean for one value)."""
    mean, half = mean_ci(values)
    return f"{mean:.{digits}f}" if math.isnan(half) else f"{mean:.{digits}f} ± {half:.{digits}f}"


def block_bootstrap_ratio(
    numerators: Sequence[float],
    denominators: Sequence[float],
    blocks: Sequence[int],
    n_boot: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """95% percentile interval of `sum(numerators) / sum(denominators)`, resampling whole blocks.

    Rows of one block (e.g. the windows of one document) are correlated, so the blocks, not the rows, are
    drawn with replacement; a ratio of sums is what a pooled metric (loss per token, gap recovered) is.
    Returns (NaN, NaN) with fewer than two blocks. numpy only (scipy is not a dependency).
    """
    import numpy as np

    num, den = np.asarray(numerators, dtype=np.float64), np.asarray(denominators, dtype=np.float64)
    _, block = np.unique(np.asarray(blocks), return_inverse=True)
    n_blocks = int(block.max()) + 1 if len(block) else 0
    if n_blocks < 2:
        return math.nan, math.nan
    num_b = np.bincount(block, weights=num, minlength=n_blocks)  # (n_blocks,)
    den_b = np.bincount(block, weights=den, minlength=n_blocks)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_blocks, size=(n_boot, n_blocks))  # (n_boot, n_blocks) block indices
    counts = np.apply_along_axis(np.bincount, 1, draws, minlength=n_blocks)  # times each block is drawn
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = (counts @ num_b) / (counts @ den_b)
    ratios = ratios[np.isfinite(ratios)]
    if len(ratios) == 0:
        return math.nan, math.nan
    low, high = np.percentile(ratios, [2.5, 97.5])
    return float(low), float(high)
