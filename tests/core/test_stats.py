"""The shared interval helpers: Student-t means and the document-blocked bootstrap of a ratio of sums."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hf_experiments.core.stats import block_bootstrap_ratio, mean_ci


def _windows(n_docs: int, per_doc: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windows whose value shares a per-document effect (the within-document correlation blocking is for)."""
    rng = np.random.default_rng(seed)
    effect = rng.normal(1.0, 1.0, n_docs)  # (n_docs,)
    docs = np.repeat(np.arange(n_docs), per_doc)
    values = effect[docs] + rng.normal(0, 0.1, len(docs))
    return values, np.ones_like(values), docs


def test_interval_covers_the_pooled_ratio_and_shrinks_with_more_windows():
    widths = []
    for n_docs in (20, 80, 320):
        num, den, docs = _windows(n_docs, 5, seed=n_docs)
        low, high = block_bootstrap_ratio(num, den, docs)
        assert low < num.sum() / den.sum() < high
        widths.append(high - low)
        # the normal-theory width: 2 x 1.96 standard errors of a mean over documents
        doc_means = np.bincount(docs, weights=num) / np.bincount(docs)
        assert high - low == pytest.approx(3.92 * doc_means.std(ddof=1) / math.sqrt(n_docs), rel=0.25)
    assert widths[0] > widths[1] > widths[2]  # ~ 1 / sqrt(documents)


def test_blocks_are_resampled_whole_not_the_windows():
    """Windows of one document move together: treating each window as its own block understates the spread
    (the negative control), resampling documents does not."""
    num, den, docs = _windows(30, 10, seed=1)
    blocked = block_bootstrap_ratio(num, den, docs)
    per_window = block_bootstrap_ratio(num, den, np.arange(len(num)))
    assert (blocked[1] - blocked[0]) > 2 * (per_window[1] - per_window[0])
    # the same documents under other labels: the same interval
    relabelled = block_bootstrap_ratio(num, den, docs * 7 + 3)
    assert relabelled == pytest.approx(blocked)


def test_one_block_has_no_interval_and_the_seed_fixes_it():
    assert all(math.isnan(v) for v in block_bootstrap_ratio([1.0, 2.0], [1.0, 1.0], [0, 0]))
    num, den, docs = _windows(10, 3, seed=2)
    assert block_bootstrap_ratio(num, den, docs, seed=4) == block_bootstrap_ratio(num, den, docs, seed=4)


def test_mean_ci_half_width_is_t_times_the_standard_error():
    mean, half = mean_ci([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(4.303 * 1.0 / math.sqrt(3))
