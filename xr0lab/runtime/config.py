"""`ExecutorConfig`: the chunk timing every executor runs (docs/architecture.md §9,
docs/dynreach.md §3).

Timeline vocabulary (docs/architecture.md §9, docs/dynreach.md §3):

    H  chunk length              s  execution horizon (actions executed per cycle)
    k  trigger = H - s           d  inference delay in ticks
    p  prefix length (prefix mode: committed actions the next chunk is conditioned on)

Execution strategies (ExecutorConfig.strategy):
    "sync"    capture, hold while inferring, execute new[0:s] (chunk anchored at its arrival).
    "naive"   trigger with k actions left, keep executing the old chunk, switch to new[d] when it
              arrives; the policy gets no prefix.
    "prefix"  XR-0: as naive, but the next chunk is conditioned on the committed actions
              old[s:s+p]; with p >= d, every action executed while it computes is in its prefix.
    "guided"  as naive, but the policy receives the whole committed remainder plus soft
              `prefix_weights` (inference-time guidance); what it does with them is its business.

A policy output holding NaN or inf never reaches the robot: see `on_invalid_chunk` (default
"fallback": dropped, counted, the overrun fallback runs while a new chunk is computed).

Asynchronous chunks are anchored at their trigger tick: chunk index j is meant for tick
trigger + j, so a chunk that arrives after delta ticks starts at index delta, whatever delta turns
out to be. The first chunk has no predecessor: the executor holds until it arrives.

Arrays may be torch tensors or numpy arrays shaped (..., H, A); leading batch axes ride along
untouched, so one executor can drive a batch of environments that share a timeline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np

from xr0lab.config import ConfigError

ExecutionStrategy = Literal["sync", "naive", "prefix", "guided"]
# What to do when an inference outlasts the actions it was told are committed (jittered d > p):
# "extend" keeps executing the old chunk's remainder, "hold" sends the hold action. Either way the
# new chunk starts at index delta (time-aligned), and the event is counted.
OverrunPolicy = Literal["extend", "hold"]
# "zero" suits velocity/delta commands (zero = stay still); "repeat" suits absolute targets.
HoldAction = Literal["zero", "repeat"]
# A chunk holding NaN or inf is never executed. "fallback": it is dropped on arrival and counted
# (`Timeline.invalid_chunks`, a warning on the first one of a run), the current chunk goes on
# under the overrun policy ("extend": its remainder, "hold": the hold action) and a new inference
# starts at once. "raise": `InvalidChunkError` at its arrival, the run stops.
InvalidChunkPolicy = Literal["fallback", "raise"]
_STRATEGIES: tuple[str, ...] = get_args(ExecutionStrategy)


@dataclass(frozen=True)
class ExecutorConfig:
    """Chunk timing. `delay` is the nominal d: validated here, used to plan guidance weights."""

    chunk_length: int = 16          # H
    execution_horizon: int = 8      # s
    delay: int = 3                  # d (ticks)
    prefix_length: int = 3          # p (prefix mode only; 0 otherwise)
    strategy: ExecutionStrategy = "prefix"
    overrun: OverrunPolicy = "extend"
    hold_action: HoldAction = "zero"
    on_invalid_chunk: InvalidChunkPolicy = "fallback"

    def __post_init__(self) -> None:
        H, s, d, p = self.chunk_length, self.execution_horizon, self.delay, self.prefix_length
        for name, v in (("chunk_length", H), ("execution_horizon", s), ("delay", d),
                        ("prefix_length", p)):
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
                raise ConfigError(f"ExecutorConfig.{name} must be an int, got {v!r}")
        if self.strategy not in _STRATEGIES:
            raise ConfigError(f"ExecutorConfig.strategy must be one of {_STRATEGIES}, got "
                              f"{self.strategy!r}")
        if self.overrun not in get_args(OverrunPolicy):
            raise ConfigError(f"ExecutorConfig.overrun must be 'extend' or 'hold', got "
                              f"{self.overrun!r}")
        if self.hold_action not in get_args(HoldAction):
            raise ConfigError(f"ExecutorConfig.hold_action must be 'zero' or 'repeat', got "
                              f"{self.hold_action!r}")
        if self.on_invalid_chunk not in get_args(InvalidChunkPolicy):
            raise ConfigError(f"ExecutorConfig.on_invalid_chunk must be 'fallback' or 'raise', got "
                              f"{self.on_invalid_chunk!r}")
        if H < 1 or not 1 <= s <= H:
            raise ConfigError(f"need chunk_length H >= 1 and 1 <= execution_horizon s <= H, got "
                              f"H={H}, s={s}")
        if d < 0 or p < 0:
            raise ConfigError(f"delay d={d} and prefix_length p={p} must be >= 0")
        if self.strategy != "sync" and d > H - s:
            raise ConfigError(f"delay d={d} > chunk_length - execution_horizon = H - s = {H - s}: "
                              f"the old chunk runs out before the new one arrives (strategy "
                              f"{self.strategy!r}, H={H}, s={s})")
        if self.strategy == "prefix":
            if p < d:
                raise ConfigError(f"prefix_length p={p} < delay d={d}: actions executed during "
                                  f"inference would not be in the new chunk's prefix (need p >= d)")
            if p > H - s:
                raise ConfigError(f"prefix_length p={p} > H - s = {H - s}: the prefix must come "
                                  f"from the committed remainder of the old chunk (H={H}, s={s})")
        elif p != 0:
            raise ConfigError(f"prefix_length p={p} is only meaningful with strategy 'prefix'; "
                              f"strategy {self.strategy!r} needs p=0")

    @property
    def trigger(self) -> int:
        """k = H - s: actions of the current chunk left when the next inference starts."""
        return self.chunk_length - self.execution_horizon

    @classmethod
    def from_trigger(cls, chunk_length: int, trigger: int, **kwargs: Any) -> "ExecutorConfig":
        """Build from (H, k) instead of (H, s)."""
        return cls(chunk_length=chunk_length, execution_horizon=chunk_length - trigger, **kwargs)
