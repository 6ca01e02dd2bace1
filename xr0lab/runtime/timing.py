"""Chunk timing: config, delay models, guidance weights, per-tick records and invariants.

Timeline vocabulary (architecture spec section 9, benchmark spec section 3):

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

Asynchronous chunks are anchored at their trigger tick: chunk index j is meant for tick
trigger + j, so a chunk that arrives after delta ticks starts at index delta, whatever delta turns
out to be. The first chunk has no predecessor: the executor holds until it arrives.

Arrays may be torch tensors or numpy arrays shaped (..., H, A); leading batch axes ride along
untouched, so one executor can drive a batch of environments that share a timeline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Protocol, Union, get_args

import numpy as np
import torch

from xr0lab.config import ConfigError

Array = Union[torch.Tensor, np.ndarray]
ExecutionStrategy = Literal["sync", "naive", "prefix", "guided"]
# What to do when an inference outlasts the actions it was told are committed (jittered d > p):
# "extend" keeps executing the old chunk's remainder, "hold" sends the hold action. Either way the
# new chunk starts at index delta (time-aligned), and the event is counted.
OverrunPolicy = Literal["extend", "hold"]
# "zero" suits velocity/delta commands (zero = stay still); "repeat" suits absolute targets.
HoldAction = Literal["zero", "repeat"]
TickKind = Literal["fresh", "prefix", "committed", "bridge", "extend", "hold", "fallback_hold",
                   "starved"]
TICK_KINDS: tuple[str, ...] = get_args(TickKind)
HOLD_KINDS = frozenset({"hold", "fallback_hold", "starved"})
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


# ----------------------------------------------------------------------------- delays


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


def guidance_weights(chunk_length: int, delay: int, span: int) -> np.ndarray:
    """Soft prefix weights for inference-time guidance, shape (H,) float32 (benchmark arm A2).

    1 on [0, d) (executed before the chunk arrives), exponential decay on [d, span), 0 from span
    (= H - s in steady state: actions nobody has committed to). The decay is the soft-masking
    schedule of real-time chunking: c * (e^c - 1) / (e - 1) with c = (span - i) / (span - d + 1).
    """
    if not 0 <= span <= chunk_length or delay < 0:
        raise ValueError(f"need 0 <= span <= H and delay >= 0, got H={chunk_length}, "
                         f"span={span}, delay={delay}")
    i = np.arange(chunk_length, dtype=np.float64)
    c = (span - i) / max(span - delay + 1, 1)
    w = np.where(i < delay, 1.0, c * np.expm1(c) / math.expm1(1.0))
    return np.where(i < span, w, 0.0).astype(np.float32)


# ----------------------------------------------------------------------------- records


@dataclass(frozen=True)
class TickRecord:
    """What one control tick executed. `chunk`/`index` are None when the tick held.

    kind: "fresh" generated action; "prefix" an index inside the chunk's own conditioning prefix;
    "committed" executed while chunk `computing` was in flight and part of its conditioning;
    "bridge" executed while a chunk computes with no hard prefix (naive/guided); "extend" and
    "fallback_hold" the overrun fallback (in flight longer than the prefix covers); "hold" waiting
    (sync, start-up); "starved" the old chunk ran out while waiting.
    """

    tick: int
    chunk: int | None
    index: int | None
    kind: TickKind
    computing: int | None = None


@dataclass(frozen=True)
class ChunkRecord:
    """One inference: when it was asked for, when it landed, and how it was conditioned."""

    id: int
    trigger_tick: int
    arrival_tick: int
    anchor_tick: int          # tick meant for index 0
    start_index: int          # first index executed (delta in async modes, 0 in sync)
    delay_ticks: int          # arrival - trigger
    delay_estimate: int       # the d the request was planned with
    prefix_length: int        # hard prefix given to the policy (0: none)
    overrun: bool             # in flight longer than its committed actions covered
    latency_s: float | None   # measured wall time (real-time runner only)
    prefix_error: float | None  # max |chunk[:p] - prefix|: did the policy honour the prefix?
    values: Any = field(repr=False)


class InvariantViolation(RuntimeError):
    """The executor's bookkeeping broke a timeline invariant; the message says which."""


@dataclass(frozen=True)
class InferenceRequest:
    """A policy call: policy(observation, prefix, prefix_length[, prefix_weights=...])."""

    chunk_id: int
    tick: int
    observation: Any = field(repr=False)
    prefix: Any = field(repr=False)            # (..., L, A) or None
    prefix_length: int = 0
    prefix_weights: Any = field(default=None, repr=False)   # (H,) in guided mode


class Reanchorer(Protocol):
    """Re-expresses a committed prefix relative to a new anchor (delta-action embodiments)."""

    def anchor(self, observation: Any) -> Any: ...

    def __call__(self, prefix: Array, old_anchor: Any, new_anchor: Any) -> Array: ...


def call_policy(policy: Callable[..., Array], request: InferenceRequest) -> Array:
    """Call `policy` with the request; `prefix_weights` is passed only when there are some."""
    if request.prefix_weights is None:
        return policy(request.observation, request.prefix, request.prefix_length)
    return policy(request.observation, request.prefix, request.prefix_length,
                  prefix_weights=request.prefix_weights)


# ----------------------------------------------------------------------------- array helpers


def _copy(x: Array) -> Array:
    return x.clone() if isinstance(x, torch.Tensor) else np.array(x, copy=True)


def _zeros_like(x: Array) -> Array:
    return torch.zeros_like(x) if isinstance(x, torch.Tensor) else np.zeros_like(x)


def _same(a: Array, b: Array) -> bool:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.shape == b.shape and bool(torch.allclose(a, b, rtol=0, atol=0, equal_nan=True))
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=True))
    return False


def _max_abs_diff(a: Array, b: Array) -> float:
    if isinstance(a, torch.Tensor):
        return float((a.detach().double() - torch.as_tensor(b).double()).abs().max())
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def _like(x: np.ndarray, ref: Array) -> Array:
    return torch.as_tensor(x, device=ref.device) if isinstance(ref, torch.Tensor) else x


# ----------------------------------------------------------------------------- invariants


class InvariantMonitor:
    """Cheap always-on checks, fed by the scheduler tick by tick.

    1. Ticks arrive in order 0, 1, 2, ... (none skipped, none executed twice).
    2. Every executed action comes from exactly one chunk: the current one, at index
       tick - anchor, each (chunk, index) at most once, never from a chunk already replaced, and
       the value equals chunk[..., index, :].
    3. The actions executed while a chunk was computing equal that chunk's conditioning prefix.
    """

    def __init__(self) -> None:
        self._next_tick = 0
        self._current: int | None = None
        self._last_index: int | None = None
        self._retired: set[int] = set()

    def on_tick(self, record: TickRecord, action: Array | None, source: Array | None,
                anchor: int | None) -> None:
        if record.tick != self._next_tick:
            what = "skipped" if record.tick > self._next_tick else "executed twice"
            raise InvariantViolation(f"tick {self._next_tick} {what}: got tick {record.tick}")
        self._next_tick += 1
        if record.chunk is None:
            if record.index is not None or record.kind not in HOLD_KINDS:
                raise InvariantViolation(f"tick {record.tick}: kind {record.kind!r} with index "
                                         f"{record.index} but no chunk")
            return
        if source is None or anchor is None:
            raise InvariantViolation(f"tick {record.tick}: chunk {record.chunk} has no values")
        if record.chunk in self._retired:
            raise InvariantViolation(f"tick {record.tick}: chunk {record.chunk} executed after a "
                                     f"newer chunk replaced it")
        if record.chunk != self._current:
            if self._current is not None:
                self._retired.add(self._current)
            self._current, self._last_index = record.chunk, None
        if record.index != record.tick - anchor:
            raise InvariantViolation(f"tick {record.tick}: chunk {record.chunk} index "
                                     f"{record.index} but anchor {anchor} implies "
                                     f"{record.tick - anchor} (misaligned)")
        if self._last_index is not None and record.index <= self._last_index:
            raise InvariantViolation(f"tick {record.tick}: chunk {record.chunk} index "
                                     f"{record.index} executed again (last {self._last_index})")
        self._last_index = record.index
        if action is None or not _same(action, source[..., record.index, :]):
            raise InvariantViolation(f"tick {record.tick}: executed action differs from chunk "
                                     f"{record.chunk}[{record.index}]")

    def on_arrival(self, chunk_id: int, committed: Array | None,
                   executed: list[tuple[TickRecord, Array]]) -> None:
        n = 0 if committed is None else committed.shape[-2]
        for j, (record, action) in enumerate(executed[:n]):
            if record.kind != "committed" or not _same(action, committed[..., j, :]):
                raise InvariantViolation(
                    f"chunk {chunk_id}: tick {record.tick} (kind {record.kind!r}) executed while "
                    f"it computed does not equal its conditioning prefix[{j}]")
