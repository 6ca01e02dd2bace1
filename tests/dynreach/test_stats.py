"""Hierarchical bootstrap, paired differences, Holm and the seed-level tests on closed-form
cases."""

import numpy as np
import pytest

from xr0lab.dynreach.stats import (format_p, hierarchical_bootstrap, holm, holm_reject,
                                   paired_difference, per_seed_means, seed_level_test,
                                   sign_flip_p)


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


# --- seed-level tests (v2) -------------------------------------------------------------------


def test_sign_flip_enumerates_every_pattern():
    # |d| = (0.5, 0.2, 1.1, 0.9, 0.3), sum 3.0; a pattern flipping subset S has |3 - 2 S|.
    # |3 - 2 S| >= 2.6 iff S <= 0.2 or S >= 2.8: {}, {0.2} and their complements -> 4 / 32.
    assert sign_flip_p([0.5, -0.2, 1.1, 0.9, 0.3]) == 4 / 32
    assert sign_flip_p([1.0, 2.0, 3.0]) == 2 / 8          # the floor 2^(1 - n) with n = 3
    assert sign_flip_p([1.0, -1.0]) == 1.0                 # every pattern is as extreme
    with pytest.raises(ValueError, match="n <= 24"):
        sign_flip_p(np.ones(25))


def test_seed_level_test_matches_the_t_distribution():
    # Reference values: scipy.stats.ttest_1samp([1, 2, 3], 0) and t.ppf(0.975, 2) = 4.302653.
    r = seed_level_test([2.0, 3.0, 4.0], [1.0, 1.0, 1.0])
    assert r.n_seeds == 3 and r.mean == 2.0 and r.differences == (1.0, 2.0, 3.0)
    assert r.t == pytest.approx(3.464101615137755, rel=1e-12)
    assert r.p_t == pytest.approx(0.07417990022744854, rel=1e-9)
    assert r.low == pytest.approx(2.0 - 4.302652729749462 / np.sqrt(3), rel=1e-9)
    assert r.high == pytest.approx(2.0 + 4.302652729749462 / np.sqrt(3), rel=1e-9)
    assert r.p_sign_flip == 0.25 and r.p_floor == 0.25
    d = np.array([0.5, -0.2, 1.1, 0.9, 0.3])
    r5 = seed_level_test(d, np.zeros(5))
    assert r5.p_t == pytest.approx(0.08557339864849767, rel=1e-9)
    assert (r5.low, r5.high) == pytest.approx((-0.1155573340950945, 1.1555573340950946), rel=1e-9)
    assert r5.p_sign_flip == 0.125 and r5.p_floor == 0.0625


def test_one_seed_gets_no_p_value_and_mismatched_seeds_are_refused():
    r = seed_level_test([0.7], [0.5])
    assert r.mean == pytest.approx(0.2) and r.p_t is None and r.p_sign_flip is None
    assert r.low is None and format_p(r.p_sign_flip, r.p_floor) == "no p-value (one seed)"
    with pytest.raises(ValueError, match="one value per seed"):
        seed_level_test([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="below the floor"):
        format_p(0.01, floor=0.0625)


def test_per_seed_means_average_within_each_seed():
    labels, means = per_seed_means([1.0, 3.0, 10.0, 20.0, 30.0], [7, 7, 2, 2, 2])
    assert labels.tolist() == [2, 7] and means.tolist() == [20.0, 2.0]
