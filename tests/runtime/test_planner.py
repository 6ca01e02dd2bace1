"""Budget planner: worked examples computed by hand."""

from __future__ import annotations

import pytest

from xr0lab.runtime.planner import AsyncSetting, latency_quantile, plan, reaction_floor
from xr0lab.runtime.delays import latency_to_ticks


def test_delay_ticks_worked_examples():
    """d = latency_to_ticks(latency, rate), the runtime's ceiling, which the planner uses."""
    assert latency_to_ticks(0.080, 30) == 3  # XR-0: 80 ms at 30 Hz = 2.4 ticks -> 3 (docs/architecture.md §9)
    assert latency_to_ticks(0.100, 30) == 3  # exactly 3 ticks, despite 0.1 * 30 = 3.00...04
    assert latency_to_ticks(0.101, 30) == 4
    assert latency_to_ticks(0.0, 30) == 0
    assert latency_to_ticks(0.001, 30) == 1
    with pytest.raises(ValueError, match="rate > 0 Hz"):
        latency_to_ticks(0.08, 0)
    assert [plan(x, 30, 30).d for x in (0.080, 0.100, 0.101)] == [3, 3, 4]


def test_latency_quantile_uses_an_observed_sample():
    samples = [0.07] * 98 + [0.12, 0.20]
    assert latency_quantile(samples, 0.95) == 0.07
    assert latency_quantile(samples, 0.99) == 0.20  # index 0.99 * 99 = 98.01 -> next sample up
    assert latency_quantile(0.08) == 0.08
    with pytest.raises(ValueError, match="quantile"):
        latency_quantile(samples, 0)
    with pytest.raises(ValueError, match="no samples"):
        latency_quantile([])


def test_xr0_released_timeline():
    """80 ms at 30 Hz, H = 30, k = 10 (s = 20): d = 3, p in 3..10 (the remainder has 10)."""
    pl = plan(0.080, 30, 30, k=10)
    assert pl.d == 3
    assert [r.setting.p for r in pl.rows] == list(range(3, 11))
    assert [r.setting.p for r in plan(0.080, 30, 30, k=10, max_prefix=6).rows] == [3, 4, 5, 6]
    best = pl.rows[0]
    # async: the change waits up to s = 20 ticks for the next capture, then p = 3 more
    assert best.async_floor.worst_ticks == 23
    assert best.async_floor.worst_s == pytest.approx(23 / 30)  # 767 ms
    assert best.async_floor.best_ticks == 3
    # sync: a cycle is s + d = 23 ticks (hold 3, execute 20); then the 3-tick hold again
    assert best.sync_floor.worst_ticks == 26
    assert best.sync_floor.worst_s == pytest.approx(26 / 30)
    assert best.duty_cycle == pytest.approx(0.080 / (20 / 30))  # GPU busy 12 % of the time


def test_benchmark_timeline_constraints():
    """DynReach: H = 16, s = 8 -> d <= 8 and p in d..8."""
    assert [r.setting.p for r in plan(4 / 30, 30, 16, s=8).rows] == [4, 5, 6, 7, 8]
    assert [r.setting.p for r in plan(8 / 30, 30, 16, s=8).rows] == [8]
    assert plan(9 / 30, 30, 16, s=8).rows == ()
    st = AsyncSetting(horizon=16, s=8, d=9, p=9, rate_hz=30)
    text = " ".join(st.violations())
    assert "H - s" in text and "remainder" in text


def test_violations_name_each_constraint():
    st = AsyncSetting(horizon=30, s=20, d=3, p=2, rate_hz=30)
    assert any("p = 2 < d = 3" in v for v in st.violations())
    overlapping = AsyncSetting(horizon=30, s=2, d=3, p=3, rate_hz=30)
    assert any("in flight" in v for v in overlapping.violations())
    assert overlapping.feasible(allow_overlap=True)
    assert any("max_prefix" in v for v in
               AsyncSetting(30, 20, 3, 8, 30).violations(max_prefix=6))


def test_unpinned_plan_is_sorted_by_floor_and_covers_all_s():
    pl = plan(0.080, 30, 30)
    floors = [r.async_floor.worst_ticks for r in pl.rows]
    assert floors == sorted(floors)
    first = pl.rows[0].setting
    assert (first.s, first.p) == (3, 3)  # fastest reaction: trigger every d ticks, p = d
    assert {r.setting.s for r in pl.rows} == set(range(3, 28))  # d <= s <= H - d


def test_samples_set_d_at_the_quantile_and_report_late_share():
    samples = [0.060] * 90 + [0.095] * 10
    pl = plan(samples, 30, 30, k=10, quantile=0.99)
    assert pl.d == 3 and pl.late_fraction == 0.0
    pl50 = plan(samples, 30, 30, k=10, quantile=0.5)
    assert pl50.d == 2 and pl50.late_fraction == pytest.approx(0.10)


def test_reaction_floor_modes_and_errors():
    st = AsyncSetting(horizon=16, s=8, d=4, p=6, rate_hz=30)
    assert reaction_floor(st, "async").worst_ticks == 8 + 6
    assert reaction_floor(st, "sync").worst_ticks == (8 + 4) + 4
    with pytest.raises(ValueError, match="mode"):
        reaction_floor(st, "later")
    with pytest.raises(ValueError, match="disagree"):
        plan(0.08, 30, 30, s=10, k=10)
