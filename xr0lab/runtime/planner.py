"""Latency budget planner for asynchronous chunk execution (docs/architecture.md §9, docs/dynreach.md §3).

From a latency distribution and a control rate it finds the executor settings that are feasible,
and what each costs in reaction time.

Words (ticks are control periods, 1 / rate):
  H  chunk length (actions per chunk)
  s  execution horizon: ticks between two inference triggers (T_e in docs/architecture.md §9); k = H - s is
     the number of actions of the current chunk still unexecuted at a trigger
  d  inference delay in ticks: ceil(latency quantile * rate), the runtime's own
     `xr0lab.runtime.delays.latency_to_ticks` (exact multiples of the tick do not round up)
  p  prefix length: committed actions the new chunk is conditioned on

Asynchronous cycle at trigger tick t_c: capture the observation; inference runs for d ticks while
the current chunk keeps executing; the new chunk is anchored at t_c, conditioned on the committed
prefix R[0:p] (R = the k actions left), and takes over at t_c + d. Constraints:
  d <= H - s  the remainder must cover the delay (else the robot runs out of actions)
  p >= d      the prefix covers every action executed while inferring (seamless switch)
  p <= H - s  a prefix can only be made of actions that exist (R has k = H - s of them)
  d <= s      one inference in flight at a time (the next trigger comes after the result)
Synchronous cycle: capture, hold d ticks, execute new[0:s]; one cycle lasts s + d ticks.

Reaction-time floor (docs/dynreach.md §6.2, without the expert's own turning time): an
observation change right after a capture waits a whole cycle for the next capture (s ticks async,
s + d sync), and then the first action that can depend on it runs p ticks (async: the first p
actions are the committed prefix) or d ticks (sync: the hold) after that capture.

>>> latency_to_ticks(0.080, 30), latency_to_ticks(0.100, 30)  # 2.4 ticks; 3.0000000000000004
(3, 3)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from xr0lab.runtime.delays import latency_to_ticks

ExecMode = Literal["async", "sync"]

# Latencies are often exact multiples of the tick (0.1 s at 30 Hz = 3 ticks); floating-point
# products like 0.1 * 30 = 3.0000000000000004 must not count as late. The tolerance
# `latency_to_ticks` applies to its ceiling.
_TICK_EPS = 1e-9


def latency_quantile(latency, quantile: float = 0.99) -> float:
    """The `quantile` of latency samples (seconds), or a constant latency as is.

    Uses the "higher" rule: the result is an observed sample, never an interpolation below one
    (a planner should not promise a delay nobody measured).

    >>> latency_quantile(0.08)
    0.08
    >>> latency_quantile([0.07] * 98 + [0.12, 0.20], 0.95)
    0.07
    """
    if not 0 < quantile <= 1:
        raise ValueError(f"quantile must be in (0, 1], got {quantile}")
    samples = np.atleast_1d(np.asarray(latency, dtype=float))
    if samples.size == 0:
        raise ValueError("latency has no samples")
    if not np.all(np.isfinite(samples)) or np.any(samples < 0):
        raise ValueError("latency samples must be finite and >= 0 seconds")
    if samples.size == 1:
        return float(samples[0])
    return float(np.quantile(samples, quantile, method="higher"))


@dataclass(frozen=True)
class AsyncSetting:
    """One executor setting (H, s, d, p) at a control rate."""

    horizon: int  # H
    s: int  # ticks between triggers (execution horizon)
    d: int  # inference delay in ticks
    p: int  # prefix length
    rate_hz: float

    @property
    def k(self) -> int:
        """Actions of the current chunk left at a trigger."""
        return self.horizon - self.s

    def violations(self, *, max_prefix: int | None = None,
                   allow_overlap: bool = False) -> list[str]:
        """Every broken constraint, in words (empty when feasible)."""
        H, s, d, p = self.horizon, self.s, self.d, self.p
        out = []
        if not 1 <= s <= H:
            out.append(f"s = {s} must be in 1..H = {H}")
        if d > H - s:
            out.append(f"d = {d} > H - s = {H - s}: the remainder cannot cover the delay")
        if p < d:
            out.append(f"p = {p} < d = {d}: actions executed while inferring are not in the "
                       "prefix (the switch is not seamless)")
        if p > H - s:
            out.append(f"p = {p} > H - s = {H - s}: the prefix is longer than the remainder")
        if max_prefix is not None and p > max_prefix:
            out.append(f"p = {p} > max_prefix = {max_prefix}: longer than any prefix seen in "
                       "training")
        if not allow_overlap and d > s:
            out.append(f"d = {d} > s = {s}: the next trigger comes before the result (two "
                       "inferences in flight)")
        return out

    def feasible(self, **kwargs) -> bool:
        return not self.violations(**kwargs)


@dataclass(frozen=True)
class ReactionFloor:
    """Ticks from an observation change until the first action that can depend on it.

    worst: the change lands right after a capture (waits a full cycle). best: right before one.
    """

    mode: ExecMode
    cycle_ticks: int  # ticks between captures
    response_ticks: int  # after the capture: p (async) or d (sync)
    rate_hz: float

    @property
    def worst_ticks(self) -> int:
        return self.cycle_ticks + self.response_ticks

    @property
    def best_ticks(self) -> int:
        return self.response_ticks

    @property
    def worst_s(self) -> float:
        return self.worst_ticks / self.rate_hz

    @property
    def best_s(self) -> float:
        return self.best_ticks / self.rate_hz


def reaction_floor(setting: AsyncSetting, mode: ExecMode = "async") -> ReactionFloor:
    """Reaction-time floor of a setting in `mode` (see the module docstring).

    >>> f = reaction_floor(AsyncSetting(horizon=30, s=20, d=3, p=3, rate_hz=30))
    >>> f.worst_ticks, round(f.worst_s, 4)
    (23, 0.7667)
    """
    if mode == "async":
        return ReactionFloor("async", setting.s, setting.p, setting.rate_hz)
    if mode == "sync":
        return ReactionFloor("sync", setting.s + setting.d, setting.d, setting.rate_hz)
    raise ValueError(f"mode must be 'async' or 'sync', got {mode!r}")


@dataclass(frozen=True)
class PlanRow:
    setting: AsyncSetting
    async_floor: ReactionFloor
    sync_floor: ReactionFloor
    duty_cycle: float  # fraction of wall time the accelerator is busy: latency / (s / rate)

    def as_dict(self) -> dict:
        st = self.setting
        return dict(H=st.horizon, s=st.s, k=st.k, d=st.d, p=st.p,
                    async_floor_ticks=self.async_floor.worst_ticks,
                    async_floor_s=self.async_floor.worst_s,
                    sync_floor_ticks=self.sync_floor.worst_ticks,
                    sync_floor_s=self.sync_floor.worst_s, duty_cycle=self.duty_cycle)


@dataclass(frozen=True)
class Plan:
    """Feasible settings for one latency budget, best reaction floor first."""

    latency_s: float  # the latency quantile used
    quantile: float
    rate_hz: float
    horizon: int
    d: int
    late_fraction: float | None  # share of samples slower than d ticks (None for a constant)
    rows: tuple[PlanRow, ...]

    def table(self) -> list[dict]:
        return [r.as_dict() for r in self.rows]

    def format(self, limit: int = 12) -> str:
        head = (f"latency q{self.quantile:g} = {self.latency_s * 1e3:.1f} ms at "
                f"{self.rate_hz:g} Hz -> d = {self.d} ticks; H = {self.horizon}")
        if self.late_fraction is not None:
            head += f"; {self.late_fraction:.2%} of samples exceed d"
        lines = [head, f"{'s':>3} {'k':>3} {'p':>3} {'async floor':>14} {'sync floor':>14} "
                       f"{'duty':>6}"]
        for r in self.rows[:limit]:
            st = r.setting
            lines.append(f"{st.s:3d} {st.k:3d} {st.p:3d} "
                         f"{r.async_floor.worst_ticks:4d} ({r.async_floor.worst_s * 1e3:5.0f} ms) "
                         f"{r.sync_floor.worst_ticks:4d} ({r.sync_floor.worst_s * 1e3:5.0f} ms) "
                         f"{r.duty_cycle:6.2f}")
        if not self.rows:
            lines.append("(no feasible setting)")
        return "\n".join(lines)


def plan(latency, rate_hz: float, horizon: int, *, quantile: float = 0.99,
         s: int | None = None, k: int | None = None, max_prefix: int | None = None,
         allow_overlap: bool = False) -> Plan:
    """All feasible (s, p) for a latency budget; `s` or `k` pins the execution horizon.

    >>> pl = plan(0.080, 30, 30, k=10)
    >>> pl.d, [r.setting.p for r in pl.rows]
    (3, [3, 4, 5, 6, 7, 8, 9, 10])
    """
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    if s is not None and k is not None and s != horizon - k:
        raise ValueError(f"s = {s} and k = {k} disagree: s must equal H - k = {horizon - k}")
    if k is not None:
        s = horizon - k
    if s is not None and not 1 <= s <= horizon:
        raise ValueError(f"s must be in 1..H = {horizon}, got {s} (k = H - s)")
    lat = latency_quantile(latency, quantile)
    d = latency_to_ticks(lat, rate_hz)
    samples = np.atleast_1d(np.asarray(latency, dtype=float))
    late = None if samples.size == 1 else float(np.mean(samples * rate_hz > d + _TICK_EPS))
    rows = []
    for s_ in ([s] if s is not None else range(1, horizon + 1)):
        for p in range(d, horizon - s_ + 1):
            st = AsyncSetting(horizon, s_, d, p, rate_hz)
            if st.feasible(max_prefix=max_prefix, allow_overlap=allow_overlap):
                rows.append(PlanRow(st, reaction_floor(st, "async"), reaction_floor(st, "sync"),
                                    lat * rate_hz / s_))
    rows.sort(key=lambda r: (r.async_floor.worst_ticks, -r.setting.s, r.setting.p))
    return Plan(lat, quantile, rate_hz, horizon, d, late, tuple(rows))
