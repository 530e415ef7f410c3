"""Batch functions: where the MLP experiment's (X, y) samples come from, online or offline.

A batch function ``fn(n, rng, **params) -> (X, y)`` is named in the config by a built-in name
(``powerlaw_hermite``) or an import path, and receives the keyword arguments it names; modelscape-style factories
work too. `BatchSource` makes a job's data deterministic: each step's batch, the fixed training set and the test
set come from their own seed sequences, so a resumed run sees the same batches and two trials never share data.

Design: `docs/sweeps_and_mlp.md`, section "Data (batch functions)".
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from numpy.polynomial import hermite_e

from hf_experiments.core.imports import call_with_accepted, check_object, import_object

_ONLINE, _TRAIN, _TEST = 1, 2, 3  # seed-sequence streams


def powerlaw_eigenvalues(dim: int, alpha: float, offset: float = 3.0) -> np.ndarray:
    """Covariance spectrum lambda_i ~ (i + offset)^-alpha, normalised to sum 1, shape (dim,)."""
    lam = (offset + np.arange(dim, dtype=np.float64)) ** -alpha
    return lam / lam.sum()


_TERM = re.compile(r"^\s*(\d+)\s*(?:\^\s*(\d+))?\s*$")


def parse_monomial(spec: str) -> dict[int, int]:
    """``"0^2*3"`` -> {0: 2, 3: 1}: He_2(z_0) * He_1(z_3). Raises ValueError on a malformed term."""
    out: dict[int, int] = {}
    for term in str(spec).split("*"):
        m = _TERM.match(term)
        if not m:
            raise ValueError(
                f"target_monomials: term {term!r} of {spec!r} is invalid; expected 'i' or 'i^k' joined "
                "by '*' (e.g. '0', '1*2', '0^3')"
            )
        dim, power = int(m.group(1)), int(m.group(2) or 1)
        if power < 1:
            raise ValueError(f"target_monomials: power {power} in {spec!r} is invalid; expected an integer >= 1")
        out[dim] = out.get(dim, 0) + power
    return out


def hermite_monomial(z: np.ndarray, monomial: Mapping[int, int]) -> np.ndarray:
    """Orthonormal Hermite monomial prod_j He_{k_j}(z_j) / sqrt(k_j!) of whitened z (n, dim) -> (n,)."""
    out = np.ones(len(z))
    for dim, power in monomial.items():
        coef = np.zeros(power + 1)
        coef[power] = 1.0 / math.sqrt(math.factorial(power))
        out *= hermite_e.hermeval(z[:, dim], coef)
    return out


@functools.lru_cache(maxsize=8)
def sample_pca_basis(seed: int, dim: int, alpha: float, offset: float, n_ref: int) -> tuple[np.ndarray, np.ndarray]:
    """The original's whitening basis: the SVD X = U S V^T of one reference sample of `n_ref` inputs, drawn as
    it draws them (float32 ``torch.normal(0, 1, (n_ref, dim), generator=torch.Generator().manual_seed(seed))``
    times sqrt(lambda)). Returns (V^T (dim, dim), S (dim,)) in float64; the signs of V's rows are the SVD's."""
    lam = torch.as_tensor(powerlaw_eigenvalues(dim, alpha, offset), dtype=torch.float32)
    gen = torch.Generator().manual_seed(int(seed))
    x = torch.normal(0.0, 1.0, (n_ref, dim), generator=gen) * torch.sqrt(lam)  # (n_ref, dim)
    _, s, vt = torch.linalg.svd(x, full_matrices=False)
    return vt.double().numpy(), s.double().numpy()


def hermite_targets(
    x: np.ndarray,
    target_monomials: Sequence[str],
    alpha: float = 1.5,
    offset: float = 3.0,
    hermite_basis: str = "sample_pca",
    pca_samples: int = 14_000,
    pca_seed: int = 42,
) -> np.ndarray:
    """The target of inputs x (n, dim): the mean of the orthonormal Hermite monomials of the whitened inputs.

    `hermite_basis="sample_pca"` whitens as the original does, z = sqrt(n_ref) x V^T S^-1 with the PCA of one
    reference sample (`sample_pca_basis`, drawn from `pca_seed`, fixed across the jobs of a sweep so that every
    job learns the same function): a sum of terms such as ["0", "1"] then gives the original's target,
    signs included. `"population"` uses z = x / sqrt(lambda) (the exact spectrum, no sampling error; single
    terms agree with the original up to sign)."""
    dim = x.shape[1]
    monomials = [parse_monomial(m) for m in target_monomials]
    for mono in monomials:
        if max(mono) >= dim:
            raise ValueError(
                f"target_monomials: input index {max(mono)} is invalid for dim={dim}; expected indices in 0..{dim - 1}"
            )
    if hermite_basis == "sample_pca":
        vt, s = sample_pca_basis(int(pca_seed), dim, float(alpha), float(offset), int(pca_samples))
        z = (x @ vt.T) / s * math.sqrt(pca_samples)  # (n, dim), whitened in the reference sample's PCA basis
    elif hermite_basis == "population":
        z = x / np.sqrt(powerlaw_eigenvalues(dim, alpha, offset))
    else:
        raise ValueError(f"hermite_basis={hermite_basis!r} is invalid; expected 'sample_pca' or 'population'")
    return np.mean([hermite_monomial(z, m) for m in monomials], axis=0)  # (n,)


def powerlaw_hermite(
    n: int,
    rng: np.random.Generator,
    dim: int = 500,
    alpha: float = 1.5,
    offset: float = 3.0,
    target_monomials: Sequence[str] = ("0",),
    noise_std: float = 0.0,
    hermite_basis: str = "sample_pca",
    pca_samples: int = 14_000,
    pca_seed: int = 42,
) -> tuple[np.ndarray, np.ndarray]:
    """modelscape's synthetic data: x ~ N(0, diag(lambda)) with a power-law spectrum; y = `hermite_targets(x)`
    plus Gaussian noise."""
    x = rng.standard_normal((n, dim)) * np.sqrt(powerlaw_eigenvalues(dim, alpha, offset))  # (n, dim)
    y = hermite_targets(x, target_monomials, alpha, offset, hermite_basis, pca_samples, pca_seed)
    if noise_std > 0:
        y = y + noise_std * rng.standard_normal(n)
    return x.astype(np.float32), y.astype(np.float32)


BUILTIN_BATCH_FNS: dict[str, Callable[..., Any]] = {"powerlaw_hermite": powerlaw_hermite}


def resolve_batch_fn(spec: str, run: bool = True) -> Callable[..., Any] | None:
    """A built-in batch function's name, or an import path (with `run=False` only checked, not imported:
    validation runs no user code)."""
    if spec in BUILTIN_BATCH_FNS:
        return BUILTIN_BATCH_FNS[spec]
    if not run:
        check_object(spec, "batch_fn")
        return None
    return import_object(spec, "batch_fn")


def _as_float_tensor(a: Any) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a) if not isinstance(a, torch.Tensor) else a, dtype=torch.float32).cpu()


def _as_label_tensor(a: Any) -> torch.Tensor:
    """Labels: integers (class indices, for cross-entropy) stay int64, everything else becomes float32."""
    t = torch.as_tensor(np.asarray(a) if not isinstance(a, torch.Tensor) else a).cpu()
    if t.dtype in (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8):
        return t.long()
    return t.to(torch.float32)


class BatchSource:
    """The data of one job: a batch per step (online), one fixed training set (offline), a test set.

    `params` are the keyword arguments offered to the batch function (config values and `batch_fn_kwargs`).
    """

    def __init__(
        self, fn: Callable[..., Any], params: Mapping[str, Any], seed: int, n_samples: int, n_test: int
    ) -> None:
        self.fn, self.params, self.seed = fn, dict(params), int(seed)
        self.n_samples, self.n_test = n_samples, n_test

    def draw(self, n: int, *stream: int) -> tuple[torch.Tensor, torch.Tensor]:
        """n samples from seed sequence (seed, *stream): float32 CPU tensors X (n, d_in), y (n[, d_out])."""
        seq = np.random.SeedSequence([self.seed, *stream])
        rng = np.random.default_rng(seq)
        gen = torch.Generator().manual_seed(int(seq.generate_state(1, dtype=np.uint64)[0] >> 1))
        step = stream[1] if len(stream) > 1 else 0
        out = call_with_accepted(
            self.fn,
            {**self.params, "n": n, "bsz": n, "rng": rng, "gen": gen, "step": step, "X": None, "y": None},
        )
        if callable(out):  # a modelscape-style factory: batch_fn(step) -> (X, y)
            out = out(step)
        if not (isinstance(out, (tuple, list)) and len(out) == 2):
            raise ValueError(f"batch_fn returned {type(out).__name__}; expected a pair (X, y)")
        x, y = _as_float_tensor(out[0]), _as_label_tensor(out[1])
        if x.dim() == 1:
            x = x[:, None]  # (n, 1)
        if x.shape[0] != n or y.shape[0] != n:
            raise ValueError(
                f"batch_fn returned X of shape {tuple(x.shape)} and y of shape {tuple(y.shape)} for "
                f"n={n}; expected n rows in both"
            )
        return x, y

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Online: the fresh batch of training step `step` (0-based)."""
        return self.draw(self.n_samples, _ONLINE, step)

    def train_set(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Offline: the fixed training set of this job."""
        return self.draw(self.n_samples, _TRAIN)

    def test_set(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.draw(self.n_test, _TEST)


class OnlineBatches(torch.utils.data.IterableDataset):
    """An endless stream of whole batches ``{"x": (B, d_in), "labels": (B,) or (B, d_out)}``, one per step.

    Iteration starts at ``start_step()`` (the trainer's global step when it starts iterating), so a resumed
    run continues with the batch of its next step without regenerating the skipped ones. Use with a
    `DataLoader(batch_size=None)` (the items already are batches).
    """

    def __init__(self, source: BatchSource, start_step: Callable[[], int] = lambda: 0) -> None:
        self.source = source
        self.start_step = start_step

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        step = int(self.start_step())
        while True:
            x, y = self.source.batch(step)
            yield {"x": x, "labels": y}
            step += 1
