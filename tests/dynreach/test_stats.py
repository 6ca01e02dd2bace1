"""Hierarchical bootstrap, paired differences and Holm on closed-form cases."""

import numpy as np
import pytest

from xr0lab.dynreach.stats import hierarchical_bootstrap, holm, holm_reject, paired_difference


def test_constant_data_gives_zero_width_interval():
    est = hierarchical_bootstrap(np.full(300, 2.5), np.repeat([0, 1, 2], 100))
    assert est.mean == est.low == est.high == 2.5
    assert est.n_seeds == 3 and est.n_episodes == 300


def test_single_seed_matches_normal_theory():
    rng = np.random.default_rng(1)
    x = rng.normal(1.0, 2.0, size=2000)
    est = hierarchical_bootstrap(x, n_boot=2000)
    half = 1.96 * x.std() / np.sqrt(len(x))
    assert (est.high - est.low) / 2 == pytest.approx(half, rel=0.15)
    assert est.low < x.mean() < est.high


def test_seed_level_variance_widens_interval():
    rng = np.random.default_rng(2)
    seeds = np.repeat(np.arange(5), 200)
    offsets = rng.normal(0, 1.0, 5)[seeds]                    # between-seed spread
    x = offsets + rng.normal(0, 0.1, 1000)
    hier = hierarchical_bootstrap(x, seeds)
    flat = hierarchical_bootstrap(x)
    assert (hier.high - hier.low) > 5 * (flat.high - flat.low)


def test_bootstrap_is_reproducible_and_handles_unequal_seeds():
    rng = np.random.default_rng(3)
    x, seeds = rng.random(70), np.r_[np.zeros(20), np.ones(50)]
    a = hierarchical_bootstrap(x, seeds, rng_seed=7)
    assert a == hierarchical_bootstrap(x, seeds, rng_seed=7)
    assert a.mean == pytest.approx(x.mean())
    with pytest.raises(ValueError, match="finite"):
        hierarchical_bootstrap([1.0, np.nan])


def test_paired_difference():
    rng = np.random.default_rng(4)
    b = rng.normal(size=600)
    seeds = np.repeat([0, 1, 2], 200)
    same = paired_difference(b, b, seeds)
    assert same.mean == 0 and same.low == same.high == 0 and same.p_value == 1.0
    shifted = paired_difference(b + 0.5, b, seeds, n_boot=999)
    assert shifted.mean == pytest.approx(0.5) and shifted.p_value == pytest.approx(1 / 1000)
    noisy = paired_difference(b + rng.normal(0, 1, 600), b, seeds)
    assert noisy.p_value > 0.01
    with pytest.raises(ValueError, match="aligned"):
        paired_difference(b, b[:10])


def test_holm_known_values():
    p = [0.01, 0.04, 0.03, 0.005]
    np.testing.assert_allclose(holm(p), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_array_equal(holm_reject(p, 0.05), [True, False, False, True])
    np.testing.assert_allclose(holm([0.5]), [0.5])
    np.testing.assert_allclose(holm([0.4, 0.6]), [0.8, 0.8])
    with pytest.raises(ValueError):
        holm([1.2])
