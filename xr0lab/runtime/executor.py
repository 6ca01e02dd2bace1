"""Clocks around `ChunkScheduler`: a deterministic virtual clock and a real-time control loop.

A policy is any callable `policy(observation, prefix, prefix_length) -> chunk (..., H, A)`; in
guided mode it is also passed `prefix_weights=(H,)`. The observation comes from `observe()`,
called only at trigger ticks (rendering can be expensive). A chunk holding NaN or inf is never
executed, on either clock: `ExecutorConfig.on_invalid_chunk` says what happens instead.
"""

from __future__ import annotations

import numbers
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable

import torch

from xr0lab.runtime.scheduler import ChunkScheduler, Timeline
from xr0lab.runtime.config import ExecutorConfig
from xr0lab.runtime.delays import ConstantDelay, DelayModel, latency_to_ticks
from xr0lab.runtime.records import Array, InferenceRequest, InvalidChunk, Reanchorer, call_policy

Policy = Callable[..., Array]


class ChunkExecutor:
    """Virtual clock: the policy runs at the trigger tick, its chunk lands `delays(cycle)` ticks
    later. Deterministic, so tests, notebooks and the benchmark see identical timelines.

    Usage (with some `world` offering observe() and step(action))::

        ex = ChunkExecutor(policy, ExecutorConfig(16, 8, delay=3, prefix_length=3))
        for t in range(120):
            world.step(ex.step(world.observe))
        ex.timeline().smoothness()
    """

    def __init__(self, policy: Policy, config: ExecutorConfig, *,
                 delays: DelayModel | None = None, reanchor: Reanchorer | None = None) -> None:
        self.policy = policy
        self.config = config
        self.delays = ConstantDelay(config.delay) if delays is None else delays
        self.scheduler = ChunkScheduler(config, reanchor)
        self._pending: tuple[int, Array] | None = None   # (ready tick, chunk)

    @property
    def tick(self) -> int:
        return self.scheduler.tick

    def step(self, observe: Callable[[], Any]) -> Array:
        """Advance one tick and return the action to execute at it."""
        sched = self.scheduler
        rejected = 0
        while True:
            if self._pending is not None and sched.tick >= self._pending[0]:
                if isinstance(sched.deliver(self._pending[1]), InvalidChunk):
                    rejected += 1
                self._pending = None
                if rejected > 1:
                    # A dropped chunk is re-planned at once, but only once per tick: with d = 0 a
                    # policy that keeps returning NaN would otherwise never let the tick execute
                    # (the fallback runs instead, and the next tick re-plans again).
                    break
            elif sched.wants_inference():
                request = sched.begin_inference(observe())
                chunk = call_policy(self.policy, request)
                sched.check_chunk(chunk)   # fail at the trigger tick, not d ticks later
                d = self.delays(request.chunk_id)
                if not isinstance(d, numbers.Integral) or d < 0:
                    raise ValueError(f"delay model returned {d!r} for cycle "
                                     f"{request.chunk_id}; expected an int number of ticks >= 0")
                self._pending = (sched.tick + int(d), chunk)
            else:
                break
        return sched.execute()

    def run(self, observe: Callable[[], Any], n_ticks: int,
            act: Callable[[Array], None] | None = None) -> Timeline:
        """`n_ticks` steps, passing each action to `act`; returns the timeline."""
        for _ in range(n_ticks):
            action = self.step(observe)
            if act is not None:
                act(action)
        return self.timeline()

    def timeline(self) -> Timeline:
        return self.scheduler.timeline()


def _timed(policy: Policy, request: InferenceRequest) -> tuple[Array, float]:
    start = time.perf_counter()
    chunk = call_policy(policy, request)
    return chunk, time.perf_counter() - start


class RealTimeRunner:
    """Control loop at `rate_hz` with inference on one worker thread, on the same scheduler.

    Each tick: collect a finished inference (its exception, if any, is re-raised here), start the
    next one when due, execute one action through `act`. A finished inference is picked up at the
    next tick boundary, so its delay is counted in whole ticks; its measured latency,
    ceil(latency * rate) ticks, becomes the delay estimate for the next request. A tick that
    starts late is still executed, never skipped (counted in `Timeline.late_ticks`). On exit the
    worker is shut down, waiting for an inference still running (threads cannot be killed).
    """

    def __init__(self, policy: Policy, config: ExecutorConfig, *, rate_hz: float = 30.0,
                 reanchor: Reanchorer | None = None) -> None:
        if rate_hz <= 0:
            raise ValueError(f"rate_hz must be > 0, got {rate_hz}")
        self.policy = policy
        self.config = config
        self.rate_hz = rate_hz
        self.reanchor = reanchor

    def run(self, observe: Callable[[], Any], act: Callable[[Array | None], None],
            n_ticks: int) -> Timeline:
        """Run `n_ticks` ticks; `act` receives None only before the first chunk has arrived."""
        sched = ChunkScheduler(self.config, self.reanchor)
        period = 1.0 / self.rate_hz
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="xr0lab-inference")
        future: Future | None = None
        times: list[float] = []
        late = 0
        try:
            start = time.perf_counter()
            for n in range(n_ticks):
                deadline = start + n * period
                wait = deadline - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                now = time.perf_counter()
                late += now - deadline > period
                times.append(now)
                while True:
                    if future is not None and future.done():
                        chunk, latency = future.result()   # re-raises the worker's exception
                        future = None
                        sched.deliver(chunk, latency_s=latency,
                                      measured_ticks=latency_to_ticks(latency, self.rate_hz))
                    elif sched.wants_inference():
                        request = sched.begin_inference(observe())
                        future = pool.submit(_timed, self.policy, request)
                    else:
                        break
                act(sched.execute())
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        if future is not None and not future.cancelled() and future.exception() is not None:
            raise future.exception()   # an error in the last, unused inference still surfaces
        return sched.timeline(tuple(times), late)


class ModelPolicy:
    """Wraps an `XR0Model` as a chunk policy.

    `inputs_fn(observation)` returns the keyword inputs of `model.predict_actions` (input_ids,
    pixel_values, state, action_mask, ...). Each call uses seed `seed + call index`, so a run is
    reproducible and successive chunks differ like independent samples. The model has no
    inference-time guidance: guided mode is refused rather than silently ignored.
    """

    def __init__(self, model: Any, inputs_fn: Callable[[Any], dict], *, seed: int = 0) -> None:
        self.model = model
        self.inputs_fn = inputs_fn
        self.seed = seed
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, observation: Any, prefix: Array | None, prefix_length: int,
                 prefix_weights: Any = None) -> torch.Tensor:
        if prefix_weights is not None:
            raise NotImplementedError("ModelPolicy: XR0Model.predict_actions has no "
                                      "inference-time guidance; use mode 'prefix' or 'naive'")
        with self._lock:
            seed, self.calls = self.seed + self.calls, self.calls + 1
        inputs = self.inputs_fn(observation)
        if prefix is not None and not isinstance(prefix, torch.Tensor):
            prefix = torch.as_tensor(prefix)
        with torch.no_grad():
            return self.model.predict_actions(**inputs, seed=seed,
                                              prefix=prefix if prefix_length else None,
                                              prefix_length=prefix_length or None)
