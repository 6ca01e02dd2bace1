"""Statistics for DynReach results (docs/dynreach.md §7).

The replication unit is the training seed; test episodes within a seed are a second level.
`hierarchical_bootstrap` resamples seeds with replacement, then episodes with replacement within
each drawn seed, and reports the percentile interval of the pooled mean. Arms are compared on
paired per-episode differences (same episode seeds and flow-noise seeds in every arm), and
secondary endpoints are Holm-corrected. Every function takes a fixed `rng_seed`, so a result
file reproduces bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Estimate:
    """A mean with its bootstrap interval; p_value only for paired differences."""

    mean: float
    low: float
    high: float
    n_seeds: int
    n_episodes: int
    p_value: float | None = None


def _groups(values, seeds) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """values (n,) + seed labels (n,) -> padded (G, n_max) matrix, counts (G,), flat values."""
    values = np.asarray(values, np.float64).reshape(-1)
    if values.size == 0:
        raise ValueError("bootstrap: values is empty")
    if not np.isfinite(values).all():
        raise ValueError("bootstrap: values must be finite (censor or drop NaN/inf first)")
    seeds = np.zeros(len(values), np.int64) if seeds is None else np.asarray(seeds).reshape(-1)
    if seeds.shape != values.shape:
        raise ValueError(f"bootstrap: seeds must label every value: {seeds.shape} vs "
                         f"{values.shape}")
    labels, inverse, counts = np.unique(seeds, return_inverse=True, return_counts=True)
    padded = np.zeros((len(labels), counts.max()))
    order = np.argsort(inverse, kind="stable")
    within = np.arange(len(values)) - np.repeat(np.cumsum(counts) - counts, counts)
    padded[inverse[order], within] = values[order]
    return padded, counts, values


def _bootstrap_means(padded: np.ndarray, counts: np.ndarray, n_boot: int,
                     rng: np.random.Generator, chunk: int = 256) -> np.ndarray:
    g, n_max = padded.shape
    out = np.empty(n_boot)
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        pick = rng.integers(0, g, size=(b, g))                          # seeds drawn (B, G)
        n = counts[pick]                                                 # (B, G)
        idx = np.floor(rng.random((b, g, n_max)) * n[..., None]).astype(np.int64)
        live = np.arange(n_max)[None, None, :] < n[..., None]           # (B, G, n_max)
        drawn = padded[pick[..., None], idx] * live
        out[start:start + b] = drawn.sum((1, 2)) / n.sum(1)
    return out


def _interval(values, seeds, n_boot: int, level: float, rng_seed: int):
    if not 0 < level < 1 or n_boot < 1:
        raise ValueError(f"need 0 < level < 1 and n_boot >= 1, got {level}, {n_boot}")
    padded, counts, flat = _groups(values, seeds)
    boots = _bootstrap_means(padded, counts, n_boot, np.random.default_rng(rng_seed))
    alpha = (1 - level) / 2
    low, high = np.quantile(boots, [alpha, 1 - alpha])
    return Estimate(float(flat.mean()), float(low), float(high), len(counts), len(flat)), boots


def hierarchical_bootstrap(values, seeds=None, *, n_boot: int = 2000, level: float = 0.95,
                           rng_seed: int = 0) -> Estimate:
    """Pooled mean of per-episode `values` with a two-level bootstrap percentile interval.

    seeds: the training seed of each value (None: one seed, i.e. an ordinary bootstrap).
    """
    return _interval(values, seeds, n_boot, level, rng_seed)[0]


def paired_difference(a, b, seeds=None, *, n_boot: int = 2000, level: float = 0.95,
                      rng_seed: int = 0) -> Estimate:
    """Mean of per-episode differences a - b (same episodes, same order) with its hierarchical
    bootstrap interval and a two-sided p-value.

    The p-value is the null-shifted bootstrap one: the share of bootstrap means at least as far
    from the estimate as the estimate is from 0, (1 + count) / (1 + n_boot).
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired_difference: a and b must be per-episode aligned, got shapes "
                         f"{a.shape} and {b.shape}")
    est, boots = _interval(a - b, seeds, n_boot, level, rng_seed)
    # The tolerance keeps a constant difference (all bootstrap means equal the estimate) from
    # counting as extreme through rounding.
    extreme = np.abs(boots - est.mean) >= abs(est.mean) - 1e-12 * max(1.0, abs(est.mean))
    p = (1 + extreme.sum()) / (1 + n_boot)
    return Estimate(est.mean, est.low, est.high, est.n_seeds, est.n_episodes, float(min(p, 1.0)))


def holm(p_values) -> np.ndarray:
    """Holm step-down adjusted p-values, in the input order.

    Sorted ascending, p_(i) becomes max_{j <= i} min(1, (m - j + 1) p_(j)) (1-based j).
    """
    p = np.asarray(p_values, np.float64).reshape(-1)
    if ((p < 0) | (p > 1) | ~np.isfinite(p)).any():
        raise ValueError(f"holm: p-values must be in [0, 1], got {p}")
    m = len(p)
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted


def holm_reject(p_values, alpha: float = 0.05) -> np.ndarray:
    """Which hypotheses Holm rejects at family-wise level alpha."""
    return holm(p_values) <= alpha
