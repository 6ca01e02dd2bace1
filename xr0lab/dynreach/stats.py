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


# ------------------------------------------------------------------- seed-level tests (v2)
# DynReach v2 (docs/dynreach.md §7) tests contrasts at the level of the replication unit: one
# paired difference per training seed (the arms share the seed's stage-A weights, test episodes
# and flow noise). With n seeds the exact sign-flip test cannot go below 2^(1 - n); nothing
# prints a p-value below what its test can reach, and one seed gets no p-value at all.


@dataclass(frozen=True)
class SeedTest:
    """A seed-level paired comparison: per-seed differences, their t interval and two tests."""

    n_seeds: int
    mean: float                 # mean of the per-seed differences
    low: float | None           # seed-level t interval (None with one seed)
    high: float | None
    t: float | None             # paired t statistic (None with one seed or zero spread)
    p_t: float | None           # two-sided paired t p-value
    p_sign_flip: float | None   # exact two-sided sign-flip permutation p-value
    p_floor: float | None       # 2^(1 - n): the smallest p the sign-flip test can reach
    differences: tuple[float, ...]


def per_seed_means(values, seeds) -> tuple[np.ndarray, np.ndarray]:
    """(seed labels, mean of `values` within each seed), labels sorted."""
    values = np.asarray(values, np.float64).reshape(-1)
    seeds = np.asarray(seeds).reshape(-1)
    if values.shape != seeds.shape or values.size == 0:
        raise ValueError(f"per_seed_means: need one seed label per value, got {values.shape} "
                         f"values and {seeds.shape} labels")
    if not np.isfinite(values).all():
        raise ValueError("per_seed_means: values must be finite")
    labels, inverse = np.unique(seeds, return_inverse=True)
    return labels, np.bincount(inverse, weights=values) / np.bincount(inverse)


def sign_flip_p(differences) -> float:
    """Exact two-sided sign-flip p-value of H0 "the differences are symmetric about 0".

    Enumerates all 2^n sign patterns: p = #{patterns with |mean| >= |observed mean|} / 2^n, so
    p >= 2^(1 - n) whenever the data are not all zero.

    >>> sign_flip_p([1.0, 2.0, 3.0])
    0.25
    >>> sign_flip_p([0.5, -0.2, 1.1, 0.9, 0.3])
    0.125
    """
    d = np.asarray(differences, np.float64).reshape(-1)
    n = d.size
    if n == 0 or not np.isfinite(d).all():
        raise ValueError("sign_flip_p: need at least one finite difference")
    if n > 24:
        raise ValueError(f"sign_flip_p: exact enumeration of 2^{n} patterns is too large "
                         f"(n <= 24 seeds)")
    signs = 1 - 2 * ((np.arange(2 ** n)[:, None] >> np.arange(n)[None, :]) & 1)  # (2^n, n)
    sums = np.abs(signs @ np.abs(d))
    observed = abs(d.sum())
    # Ties count as extreme; the tolerance keeps rounding from splitting exact ties.
    extreme = sums >= observed - 1e-12 * max(1.0, observed)
    return float(extreme.mean())


def seed_level_test(a, b, *, level: float = 0.95) -> SeedTest:
    """Paired comparison of per-seed values a[i] vs b[i] (same seed i in both arms).

    The interval is the seed-level t interval of mean(a - b); the tests are the paired t test
    and the exact sign-flip test. With one seed only the difference is reported.
    """
    from scipy import stats as st

    a, b = np.asarray(a, np.float64).reshape(-1), np.asarray(b, np.float64).reshape(-1)
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"seed_level_test: a and b need one value per seed, in the same seed "
                         f"order; got {a.shape} and {b.shape}")
    if not 0 < level < 1:
        raise ValueError(f"seed_level_test: level must be in (0, 1), got {level}")
    d = a - b
    if not np.isfinite(d).all():
        raise ValueError("seed_level_test: per-seed values must be finite")
    n, mean = d.size, float(d.mean())
    if n == 1:
        return SeedTest(1, mean, None, None, None, None, None, None, (float(d[0]),))
    sd = float(d.std(ddof=1))
    half = float(st.t.ppf(0.5 + level / 2, n - 1)) * sd / np.sqrt(n)
    t = p_t = None
    if sd > 0:
        t = mean / (sd / np.sqrt(n))
        p_t = float(2 * st.t.sf(abs(t), n - 1))
    return SeedTest(n, mean, mean - half, mean + half, t, p_t, sign_flip_p(d),
                    float(2.0 ** (1 - n)), tuple(float(x) for x in d))


def _round_up(p: float, digits: int = 3) -> float:
    """p rounded *up* to `digits` significant digits, so a printed p never understates it."""
    if p <= 0:
        return p
    scale = 10.0 ** (digits - 1 - int(np.floor(np.log10(p))))
    return float(np.ceil(p * scale - 1e-9) / scale)


def format_p(p: float | None, floor: float | None = None) -> str:
    """A p-value as printed: 'n/a' when there is none (e.g. one seed); never below `floor`,
    and rounded up (2^-9 = 0.001953... prints as 0.00196, never below what the test reaches).

    >>> format_p(0.0625, floor=0.0625)
    'p = 0.0625 (the smallest this test can give)'
    >>> format_p(2.0 ** -9, floor=2.0 ** -9)
    'p = 0.00196 (the smallest this test can give)'
    >>> format_p(None)
    'no p-value (one seed)'
    """
    if p is None:
        return "no p-value (one seed)"
    if floor is not None and p < floor - 1e-15:
        raise ValueError(f"p = {p} is below the floor {floor} its test can reach")
    text = f"p = {_round_up(p):.3g}"
    if floor is not None and abs(p - floor) <= 1e-15:
        text += " (the smallest this test can give)"
    return text
