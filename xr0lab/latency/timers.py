"""Stage timers for one XR-0 inference, and the percentiles of their samples.

Stages (the names `xr0lab.latency.opcount` counts and `xr0lab.latency.roofline` predicts):
  preprocess   processor call (resize/normalise images, tokenise) and the copy to the device
  vision       `vlm.model.visual` forward
  prefill      everything up to the end of `vlm.model.language_model` forward except the vision
               tower: input checks, M-RoPE ids, embedding, image scatter, the language model
  handoff      language model end -> first DiT step: cache pick-up, DiT positions, rotary
               tables, mask, state token
  dit_step_k   start of network step k -> start of step k + 1 (so the Euler update after a step
               is in it); the last step ends when the sampler emits its actions
  postprocess  actions to the host, de-normalised by the processor

How it hooks in (nothing in the model changes): forward pre/post hooks on `vlm.model.visual`,
`vlm.model.language_model` and the `hook_actions` hook point, and a per-step callback made by
wrapping the instance's `denoise_step` (outside any compiled graph, so it also times a
`torch.compile`d step). Everything is removed when the timer's context exits. Timestamps are
`time.perf_counter` on CPU and CUDA events on GPU (read after one synchronise per inference).

Timers cost a few microseconds per mark (about 20 marks per inference);
`xr0lab.latency.profile.timer_overhead` measures timers-on against timers-off side by side, and
that ratio is the claim, not a test assertion.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import numpy as np


class Clock:
    """perf_counter marks on CPU; CUDA events (read after one synchronise) on GPU."""

    def __init__(self, device_type: str) -> None:
        self.cuda = device_type == "cuda"
        if self.cuda:
            import torch

            self._torch = torch

    def mark(self):
        if self.cuda:
            event = self._torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def sync(self) -> None:
        if self.cuda:
            self._torch.cuda.synchronize()

    def seconds(self, a, b) -> float:
        return a.elapsed_time(b) / 1e3 if self.cuda else b - a


class StageTimer:
    """Context manager that marks stage boundaries of `XR0Model.predict_actions` calls.

    Call `begin()` before preprocessing, `model_start()` right before `predict_actions`,
    `end()` after postprocessing; `stages()` then returns seconds per stage for that inference.
    """

    def __init__(self, model, device_type: str = "cpu") -> None:
        self.model = model
        self.clock = Clock(device_type)
        self.marks: list[tuple[str, Any]] = []
        self._undo: list[Callable[[], None]] = []

    def _mark(self, label: str) -> None:
        self.marks.append((label, self.clock.mark()))

    def begin(self) -> None:
        self.marks = []
        self._mark("begin")

    def model_start(self) -> None:
        self._mark("model_start")

    def end(self) -> None:
        self._mark("end")

    def __enter__(self) -> "StageTimer":
        m = self.model
        for module, label in ((m.vlm.model.visual, "vision"),
                              (m.vlm.model.language_model, "language_model")):
            pre = module.register_forward_pre_hook(
                lambda *_, _l=label: self._mark(f"{_l}_start"))
            post = module.register_forward_hook(lambda *_, _l=label: self._mark(f"{_l}_end"))
            self._undo += [pre.remove, post.remove]
        done = m.hook_actions.register_forward_hook(lambda *_: self._mark("sample_end"))
        self._undo.append(done.remove)
        # the per-step callback: wrap the instance's step (a compiled step stays compiled inside)
        had_own = "denoise_step" in m.__dict__
        inner = m.denoise_step

        def timed_step(*args, **kwargs):
            self._mark("step_start")
            return inner(*args, **kwargs)

        m.denoise_step = timed_step
        self._undo.append(lambda: setattr(m, "denoise_step", inner) if had_own
                          else m.__dict__.pop("denoise_step", None))
        return self

    def __exit__(self, *exc) -> None:
        while self._undo:
            self._undo.pop()()

    def stages(self) -> dict[str, float]:
        """Seconds per stage of the last inference (synchronises the device once)."""
        self.clock.sync()
        t = {}
        steps = []
        for label, mark in self.marks:
            if label == "step_start":
                steps.append(mark)
            else:
                t.setdefault(label, mark)  # first occurrence (one visual call per inference)
        need = ("begin", "model_start", "vision_start", "vision_end", "language_model_end",
                "sample_end", "end")
        missing = [n for n in need if n not in t]
        if missing or not steps:
            raise RuntimeError(f"stage marks missing: {missing or ['step_start']}; was "
                               "predict_actions called inside the timer with images?")
        s = self.clock.seconds
        out = {"preprocess": s(t["begin"], t["model_start"]),
               "vision": s(t["vision_start"], t["vision_end"]),
               "prefill": s(t["model_start"], t["language_model_end"])
               - s(t["vision_start"], t["vision_end"]),
               "handoff": s(t["language_model_end"], steps[0])}
        bounds = steps + [t["sample_end"]]
        for k in range(len(steps)):
            out[f"dit_step_{k}"] = s(bounds[k], bounds[k + 1])
        out["postprocess"] = s(t["sample_end"], t["end"])
        return out


def time_interleaved(arms: dict[str, Callable[[], Any]], *, repeats: int, warmup: int = 1,
                     sync: Callable[[], None] | None = None) -> dict[str, dict]:
    """Wall seconds per call of each arm, `repeats` rounds with one call of each arm per round
    (interleaved, so drift and neighbours hit every arm alike), after `warmup` untimed rounds.
    `sync` (e.g. torch.cuda.synchronize) brackets each timed call so queued device work counts.
    Returns per arm its `percentiles`, the samples and the first warm-up call's seconds
    (`first_call_s`: lazy initialisation or compilation shows up there)."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {repeats}, {warmup}")
    sync = sync or (lambda: None)

    def timed(fn) -> float:
        sync()
        start = time.perf_counter()
        fn()
        sync()
        return time.perf_counter() - start

    first: dict[str, float | None] = {k: None for k in arms}
    for i in range(warmup):
        for name, fn in arms.items():
            t = timed(fn)
            if i == 0:
                first[name] = t
    samples: dict[str, list[float]] = {k: [] for k in arms}
    for _ in range(repeats):
        for name, fn in arms.items():
            samples[name].append(timed(fn))
    return {k: {**percentiles(v), "samples_s": v, "first_call_s": first[k]}
            for k, v in samples.items()}


def percentiles(samples: Sequence[float]) -> dict[str, float]:
    """p50, p95, p99, mean and count of timing samples (seconds)."""
    x = np.asarray(samples, dtype=float)
    return {"p50": float(np.percentile(x, 50)), "p95": float(np.percentile(x, 95)),
            "p99": float(np.percentile(x, 99)), "mean": float(x.mean()), "n": int(x.size)}
