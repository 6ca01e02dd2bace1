"""`ChunkScheduler`: which action runs at each tick, when to ask for the next chunk, and the
timeline it leaves behind. It owns no clock and no thread: the virtual executor and the real-time
runner both drive it with the same four calls, in the same order, each tick:

    while True:
        if <the in-flight result is available>: scheduler.deliver(chunk, ...); continue
        if scheduler.wants_inference(): run policy on scheduler.begin_inference(observe()); continue
        break
    action = scheduler.execute()
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from xr0lab.runtime.arrays import copy_array, like, max_abs_diff, non_finite, zeros_like
from xr0lab.runtime.config import ExecutorConfig
from xr0lab.runtime.guidance import guidance_weights
from xr0lab.runtime.invariants import InvariantMonitor
from xr0lab.runtime.records import (HOLD_KINDS, TICK_KINDS, Array, ChunkRecord, InferenceRequest,
                                    InvalidChunk, InvalidChunkError, InvalidChunkWarning,
                                    Reanchorer, TickKind, TickRecord)
from xr0lab.runtime.smoothness import Smoothness, seams_from_chunk_ids, smoothness


@dataclass(frozen=True)
class Timeline:
    """Everything one run executed, tick by tick and chunk by chunk."""

    config: ExecutorConfig
    ticks: tuple[TickRecord, ...]
    chunks: tuple[ChunkRecord, ...]
    actions: Any = field(repr=False)    # (..., T, A) executed actions; None before any chunk
    tick_times: tuple[float, ...] | None = field(default=None, repr=False)  # real clock only
    late_ticks: int = 0                 # real clock: ticks started more than a period late
    invalid_chunks: tuple[InvalidChunk, ...] = ()   # dropped policy outputs (NaN or inf)

    def chunk_ids(self) -> np.ndarray:
        """(T,) int: the chunk each tick executed, -1 where it held."""
        return np.array([-1 if r.chunk is None else r.chunk for r in self.ticks], dtype=np.int64)

    def indices(self) -> np.ndarray:
        """(T,) int: the index within its chunk each tick executed, -1 where it held."""
        return np.array([-1 if r.index is None else r.index for r in self.ticks], dtype=np.int64)

    def kinds(self) -> tuple[TickKind, ...]:
        return tuple(r.kind for r in self.ticks)

    def seams(self) -> np.ndarray:
        """(T,) bool: ticks whose source differs from the previous tick's."""
        return seams_from_chunk_ids(self.chunk_ids())

    def counts(self) -> dict[str, int]:
        """Ticks per kind, plus `overrun_cycles` (chunks in flight longer than their prefix) and
        `invalid_chunks` (policy outputs dropped for NaN or inf)."""
        out = {k: 0 for k in TICK_KINDS}
        for r in self.ticks:
            out[r.kind] += 1
        out["overrun_cycles"] = sum(c.overrun for c in self.chunks)
        out["invalid_chunks"] = len(self.invalid_chunks)
        return out

    def smoothness(self) -> Smoothness:
        return smoothness(self.actions, self.seams())

    def periods(self) -> np.ndarray:
        """Measured seconds between consecutive tick starts (real clock only)."""
        if self.tick_times is None:
            raise ValueError("this timeline ran on the virtual clock; it has no tick times")
        return np.diff(np.asarray(self.tick_times))


@dataclass
class _Chunk:
    id: int
    values: Array
    anchor_tick: int
    prefix_length: int
    anchor_state: Any


@dataclass
class _InFlight:
    id: int
    trigger_tick: int
    committed: Array | None     # what the executor will run meanwhile (old chunk's frame)
    prefix_given: Array | None  # what the policy saw (after re-anchoring)
    prefix_length: int          # hard prefix length (prefix mode)
    committed_len: int          # ticks after the trigger whose action the policy was told about
    covered: int                # ticks after the trigger that may run the old chunk normally
    delay_estimate: int
    anchor_state: Any
    has_previous: bool
    executed: list = field(default_factory=list)


class ChunkScheduler:
    """The scheduling state machine shared by every clock (see module docstring)."""

    def __init__(self, config: ExecutorConfig, reanchor: Reanchorer | None = None) -> None:
        self.config = config
        self.reanchor = reanchor
        self.monitor = InvariantMonitor()
        self.delay_estimate = config.delay  # d used to plan requests; updated by measurements
        self._tick = 0
        self._current: _Chunk | None = None
        self._in_flight: _InFlight | None = None
        self._template: Array | None = None     # first chunk, fixes type and shape
        self._last_action: Array | None = None
        self._ticks: list[TickRecord] = []
        self._actions: list[Array | None] = []
        self._chunks: list[ChunkRecord] = []
        self._invalid: list[InvalidChunk] = []
        # After a dropped chunk under overrun="hold", the current chunk's remainder is stale: it
        # is held, not executed, until a valid chunk arrives.
        self._stale = False
        self._next_id = 0

    @property
    def tick(self) -> int:
        """The next tick `execute` will run."""
        return self._tick

    @property
    def in_flight(self) -> bool:
        return self._in_flight is not None

    def wants_inference(self) -> bool:
        """True when no inference is running and the current chunk has k or fewer actions left
        (sync: has executed its s actions), or there is no chunk yet."""
        if self._in_flight is not None:
            return False
        if self._current is None:
            return True
        return self._tick - self._current.anchor_tick >= self.config.execution_horizon

    def begin_inference(self, observation: Any) -> InferenceRequest:
        """Capture the committed actions at this tick and mark an inference in flight."""
        if not self.wants_inference():
            why = "an inference is in flight" if self.in_flight else "the current chunk runs on"
            raise RuntimeError(f"tick {self._tick}: begin_inference called while {why}")
        cfg, cur = self.config, self._current
        H, strategy = cfg.chunk_length, cfg.strategy
        remainder = None
        if cur is not None and not self._stale:
            i = self._tick - cur.anchor_tick
            remainder = cur.values[..., min(i, H):, :]
        rem_len = 0 if remainder is None else remainder.shape[-2]
        # committed: actions the policy is told about (old chunk's frame); committed_len: how
        # many in-flight ticks must equal them; covered: in-flight ticks that run the old chunk
        # without counting as an overrun.
        committed, hard_len, committed_len, covered, weights = None, 0, 0, rem_len, None
        if strategy == "sync":
            covered = 0
        elif strategy == "prefix" and rem_len > 0:
            # Short only after an overrun pushed the trigger late; visible as prefix_length < p.
            hard_len = committed_len = covered = min(cfg.prefix_length, rem_len)
            committed = copy_array(remainder[..., :hard_len, :])
        elif strategy == "guided" and rem_len > 0:
            committed = copy_array(remainder)
            committed_len = min(self.delay_estimate, rem_len)
            weights = like(guidance_weights(H, self.delay_estimate, rem_len), remainder)
        anchor_state = None if self.reanchor is None else self.reanchor.anchor(observation)
        prefix = committed
        if committed is not None and anchor_state is not None and cur.anchor_state is not None:
            prefix = self.reanchor(committed, cur.anchor_state, anchor_state)
        self._in_flight = _InFlight(
            self._next_id, self._tick,
            None if committed is None else committed[..., :committed_len, :], prefix, hard_len,
            committed_len, covered, self.delay_estimate, anchor_state, cur is not None)
        self._next_id += 1
        return InferenceRequest(self._in_flight.id, self._tick, observation,
                                None if prefix is None else copy_array(prefix),
                                0 if prefix is None else prefix.shape[-2], weights)

    def check_chunk(self, chunk: Any) -> None:
        """Reject a policy output of the wrong type or shape, naming what was expected."""
        H = self.config.chunk_length
        if not isinstance(chunk, (torch.Tensor, np.ndarray)):
            raise TypeError(f"policy must return a torch tensor or numpy array shaped (..., H={H}, "
                            f"A), got {type(chunk).__name__}")
        if chunk.ndim < 2 or chunk.shape[-2] != H:
            raise ValueError(f"policy returned shape {tuple(chunk.shape)}; expected "
                             f"(..., H={H}, A) with H = ExecutorConfig.chunk_length")
        t = self._template
        if t is None:
            self._template = zeros_like(chunk[..., 0, :])
        elif type(chunk) is not type(t) or tuple(chunk.shape[:-2]) + tuple(chunk.shape[-1:]) \
                != tuple(t.shape):
            raise ValueError(f"policy returned {type(chunk).__name__} {tuple(chunk.shape)}; "
                             f"earlier chunks were {type(t).__name__} with (..., A) = "
                             f"{tuple(t.shape)}")

    def deliver(self, chunk: Array, *, latency_s: float | None = None,
                measured_ticks: int | None = None) -> ChunkRecord | InvalidChunk:
        """Install the in-flight chunk at the current tick. `measured_ticks` (real clock:
        ceil(latency * rate)) becomes the next delay estimate; default: the observed delay.
        A chunk holding NaN or inf is never installed (`ExecutorConfig.on_invalid_chunk`)."""
        flight = self._in_flight
        if flight is None:
            raise RuntimeError(f"tick {self._tick}: deliver called with no inference in flight")
        self.check_chunk(chunk)
        cfg, t = self.config, self._tick
        delta = t - flight.trigger_tick
        n_bad, first = non_finite(chunk)
        if n_bad:
            return self._reject(flight, chunk, n_bad, first, latency_s,
                                delta if measured_ticks is None else int(measured_ticks))
        sync = cfg.strategy == "sync"
        anchor, start = (t, 0) if sync else (flight.trigger_tick, delta)
        overrun = not sync and flight.has_previous and delta > flight.covered
        self.monitor.on_arrival(flight.id, flight.committed, flight.executed)
        error = None
        if flight.prefix_length > 0:
            error = max_abs_diff(chunk[..., :flight.prefix_length, :], flight.prefix_given)
        record = ChunkRecord(flight.id, flight.trigger_tick, t, anchor, start, delta,
                             flight.delay_estimate, flight.prefix_length, overrun, latency_s,
                             error, chunk)
        self._chunks.append(record)
        self._current = _Chunk(flight.id, chunk, anchor, flight.prefix_length,
                               flight.anchor_state)
        self._in_flight = None
        self._stale = False
        self.delay_estimate = delta if measured_ticks is None else int(measured_ticks)
        return record

    def _reject(self, flight: _InFlight, chunk: Array, n_bad: int, first: tuple[int, ...],
                latency_s: float | None, delay_estimate: int) -> InvalidChunk:
        t = self._tick
        what = (f"policy returned chunk {flight.id} (requested at tick {flight.trigger_tick}, "
                f"arrived at tick {t}) with {n_bad} NaN/inf entries of {tuple(chunk.shape)}, "
                f"first at index {first}")
        if self.config.on_invalid_chunk == "raise":
            raise InvalidChunkError(f"{what}; ExecutorConfig.on_invalid_chunk='raise' stops the "
                                    "run (use 'fallback' to drop it and re-plan)")
        record = InvalidChunk(flight.id, flight.trigger_tick, t, n_bad, first, latency_s)
        if not self._invalid:
            fallback = ("the hold action" if self.config.strategy == "sync" or self._current is None
                        else f"the overrun fallback ({self.config.overrun!r})")
            warnings.warn(f"{what}. It was not executed: {fallback} runs while a new chunk is "
                          "computed. Later invalid chunks of this run are counted in "
                          "Timeline.invalid_chunks without a warning.", InvalidChunkWarning,
                          stacklevel=3)
        self._invalid.append(record)
        # The executed ticks of the flight still had to match what it was told was committed.
        self.monitor.on_arrival(flight.id, flight.committed, flight.executed)
        self._in_flight = None
        if self.config.overrun == "hold" and self._current is not None:
            self._stale = True
        self.delay_estimate = delay_estimate
        return record

    def _classify(self) -> tuple[TickKind, int | None]:
        cur, flight, cfg = self._current, self._in_flight, self.config
        if cur is None:
            return "hold", None
        if self._stale:
            return ("hold" if cfg.strategy == "sync" else "fallback_hold"), None
        i = self._tick - cur.anchor_tick
        if flight is None:
            return ("prefix" if i < cur.prefix_length else "fresh"), i
        if cfg.strategy == "sync":
            return "hold", None
        if i >= cfg.chunk_length:
            return "starved", None
        j = self._tick - flight.trigger_tick
        if j < flight.committed_len:
            return "committed", i
        if j < flight.covered:
            return "bridge", i
        return ("extend", i) if cfg.overrun == "extend" else ("fallback_hold", None)

    def execute(self) -> Array | None:
        """Run the current tick: pick, record and check its action, then advance the clock.

        Returns a copy (callers may modify it). Held ticks return zeros (or the last action with
        hold_action="repeat"); None only before any chunk has been seen (real clock start-up).
        """
        kind, index = self._classify()
        cur, flight = self._current, self._in_flight
        if kind in HOLD_KINDS:
            index = None
            if self.config.hold_action == "repeat" and self._last_action is not None:
                action = copy_array(self._last_action)
            else:
                action = None if self._template is None else zeros_like(self._template)
            record = TickRecord(self._tick, None, None, kind,
                                None if flight is None else flight.id)
            self.monitor.on_tick(record, action, None, None)
        else:
            action = copy_array(cur.values[..., index, :])
            record = TickRecord(self._tick, cur.id, index, kind,
                                None if flight is None else flight.id)
            self.monitor.on_tick(record, action, cur.values, cur.anchor_tick)
            self._last_action = action
        if flight is not None:
            flight.executed.append((record, action))
        self._ticks.append(record)
        self._actions.append(action)
        self._tick += 1
        return None if action is None else copy_array(action)

    def timeline(self, tick_times: tuple[float, ...] | None = None,
                 late_ticks: int = 0) -> Timeline:
        """A frozen snapshot of the run so far."""
        actions = None
        if self._actions and self._template is not None:
            # Ticks before the first chunk (real clock) had no command; record them as zeros.
            rows = [zeros_like(self._template) if a is None else a for a in self._actions]
            actions = (torch.stack(rows, dim=-2) if isinstance(self._template, torch.Tensor)
                       else np.stack(rows, axis=-2))
        return Timeline(self.config, tuple(self._ticks), tuple(self._chunks), actions,
                        tick_times, late_ticks, tuple(self._invalid))

