"""Delay models: how many control ticks each inference takes (constant, sampled or replayed),
and the latency-to-ticks conversion."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

def latency_to_ticks(seconds: float, rate_hz: float) -> int:
    """ceil(seconds * rate): the number of ticks an inference of `seconds` occupies."""
    if seconds < 0 or rate_hz <= 0:
        raise ValueError(f"need latency >= 0 s and rate > 0 Hz, got {seconds} s at {rate_hz} Hz")
    # The epsilon stops float noise turning an exact multiple up: 0.1 * 30 = 3.0000000000000004.
    return max(0, math.ceil(seconds * rate_hz - 1e-9))


@dataclass(frozen=True)
class ConstantDelay:
    """Every inference takes `ticks` ticks."""

    ticks: int

    def __call__(self, cycle: int) -> int:
        return self.ticks


@dataclass(frozen=True)
class SampledDelay:
    """d drawn per cycle from `values` (optionally weighted); counter-based, so the draw for a
    cycle does not depend on how many draws came before (same delays in every arm)."""

    values: tuple[int, ...]
    weights: tuple[float, ...] | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.values or min(self.values) < 0:
            raise ValueError(f"SampledDelay.values must be non-empty ticks >= 0, got {self.values}")
        if self.weights is not None and len(self.weights) != len(self.values):
            raise ValueError(f"SampledDelay.weights has {len(self.weights)} entries for "
                             f"{len(self.values)} values")

    @classmethod
    def jitter(cls, delay: int, spread: int = 1, seed: int = 0) -> "SampledDelay":
        """Uniform over {d - spread, ..., d + spread}, clipped at 0 (benchmark's jitter row)."""
        return cls(tuple(range(max(0, delay - spread), delay + spread + 1)), seed=seed)

    def __call__(self, cycle: int) -> int:
        rng = np.random.default_rng((self.seed, cycle))
        p = None if self.weights is None else np.asarray(self.weights) / np.sum(self.weights)
        return int(rng.choice(np.asarray(self.values), p=p))


@dataclass(frozen=True)
class TraceDelay:
    """Replays measured delays (ticks) cycle by cycle; wraps around unless `wrap=False`."""

    ticks: tuple[int, ...]
    wrap: bool = True

    def __post_init__(self) -> None:
        if not self.ticks or min(self.ticks) < 0:
            raise ValueError(f"TraceDelay.ticks must be non-empty ticks >= 0, got {self.ticks}")

    @classmethod
    def from_latencies(cls, seconds: Any, rate_hz: float, wrap: bool = True) -> "TraceDelay":
        """From measured latencies in seconds: ceil(latency * rate) ticks each."""
        return cls(tuple(latency_to_ticks(float(x), rate_hz) for x in seconds), wrap=wrap)

    def __call__(self, cycle: int) -> int:
        if cycle >= len(self.ticks) and not self.wrap:
            raise IndexError(f"TraceDelay has {len(self.ticks)} entries; cycle {cycle} asked for "
                             f"more (pass wrap=True to replay it cyclically)")
        return self.ticks[cycle % len(self.ticks)]


DelayModel = Callable[[int], int]
