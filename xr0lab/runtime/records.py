"""What an executor records and asks: per-tick and per-chunk records, the inference request
handed to a policy, and the re-anchoring protocol."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Protocol, Union, get_args

import numpy as np
import torch

Array = Union[torch.Tensor, np.ndarray]
TickKind = Literal["fresh", "prefix", "committed", "bridge", "extend", "hold", "fallback_hold",
                   "starved"]
TICK_KINDS: tuple[str, ...] = get_args(TickKind)
HOLD_KINDS = frozenset({"hold", "fallback_hold", "starved"})


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


@dataclass(frozen=True)
class InvalidChunk:
    """A policy output that held NaN or inf. It was never executed; see
    `ExecutorConfig.on_invalid_chunk` for what ran instead."""

    id: int
    trigger_tick: int
    arrival_tick: int
    non_finite: int           # how many entries were NaN or inf
    first_index: tuple[int, ...]  # where the first one was
    latency_s: float | None   # measured wall time (real-time runner only)


class InvalidChunkError(ValueError):
    """A policy returned NaN or inf under `ExecutorConfig(on_invalid_chunk="raise")`."""


class InvalidChunkWarning(RuntimeWarning):
    """A policy returned NaN or inf; the chunk was dropped and the fallback ran instead."""


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
