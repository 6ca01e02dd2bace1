"""What inspection costs: a benchmark, not a test. The command runs the tiny preset on CPU; the
GPU suite (`xr0lab.latency.suite`) runs the same arms on the full-size model.

    python -m xr0lab hook-overhead [--reps 60] [--batch-size 1]

Arms, timed interleaved (one call of each per round, in a shuffled order, rounds repeated) so drift
and neighbours on a shared machine hit all arms alike; the median per arm is reported (and the
25th percentile, less sensitive to bursts of load from other processes), at two levels: the full
`predict_actions` (VLM prefill + 5 DiT steps) and `sample` against a fixed context (the DiT loop,
where the hook points are densest).

- bare: every HookPoint bypassed (a model with no hook points at all)
- plain: the model as shipped, hook points present, nothing attached
- noop: a do-nothing hook attached to every hook point except scores/pattern (which would switch
  attention to the explicit path): hooks attached, caching nothing
- cache-none: run_with_cache with a filter that selects nothing (the machinery alone)
- cache-1-pattern: run_with_cache of one layer's attention pattern
"""

from __future__ import annotations

import random
import statistics
import time
from contextlib import contextmanager
from typing import Callable, Iterator

import torch

import xr0lab
from xr0lab.inspect.hook_points import HookPoint


class _BareHookPoint(HookPoint):
    # Defining __call__ on the class skips nn.Module.__call__ and forward entirely: the cheapest
    # possible identity, standing in for "no hook point here".
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x


@contextmanager
def bare(model) -> Iterator[None]:
    points = list(model.hook_points.values())
    for p in points:
        p.__class__ = _BareHookPoint
    try:
        yield
    finally:
        for p in points:
            p.__class__ = HookPoint


def _time(fn: Callable[[], object], sync: Callable[[], None]) -> float:
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t0


def measure_hook_overhead(reps: int = 60, batch_size: int = 1, *, model=None,
                          inputs: dict | None = None, warmup: int = 3,
                          label: str | None = None) -> dict:
    """Time every arm (see the module docstring) at both levels, `reps` interleaved rounds after
    `warmup` rounds; then what caching one layer's attention pattern holds. Returns the samples in
    seconds and the cache figures.

    Without `model`: the tiny preset on CPU at 1 thread (this sets torch's intra-op threads) with
    example inputs of `batch_size`. With `model`: that model on its device and `inputs`, the
    keyword inputs of `predict_actions` (input_ids, attention_mask, pixel_values, image_grid_thw,
    state, action_mask) already on it; on CUDA every timed call is bracketed by a synchronise.
    `label` names the setting in the report.
    """
    if reps < 1 or warmup < 0:
        raise ValueError(f"reps must be >= 1 and warmup >= 0, got {reps}, {warmup}")
    if model is None:
        torch.set_num_threads(1)  # explicit: the ratios are about Python-side overhead, not BLAS
        torch.manual_seed(0)
        cfg = xr0lab.preset("tiny")
        model = xr0lab.XR0Model(cfg).eval()
        inputs = xr0lab.make_example_inputs(cfg, batch_size=batch_size, seed=0)
        label = label or f"tiny preset, CPU, 1 thread, batch {batch_size}"
    elif inputs is None:
        raise ValueError("measure_hook_overhead(model=...) needs inputs= (the predict_actions "
                         "keyword inputs on the model's device)")
    cfg = model.config
    batch_size = int(inputs["input_ids"].shape[0])
    label = label or f"{cfg.name} preset, {model.device}, batch {batch_size}"
    sync = torch.cuda.synchronize if model.device.type == "cuda" else (lambda: None)
    with torch.no_grad():
        context = model.prefill(inputs["input_ids"], inputs["attention_mask"],
                                inputs["pixel_values"], inputs["image_grid_thw"])
    state, action_mask = inputs["state"], inputs["action_mask"]
    noise = model.make_noise(tuple(action_mask.shape), seed=0)
    pattern = "dit.layers.0.attn.hook_pattern"
    cheap = [n for n in model.hook_points if not n.endswith(("hook_scores", "hook_pattern"))]
    noop = [(n, lambda x, hook: None) for n in cheap]

    def levels(run_predict, run_sample):
        return {"predict_actions": run_predict, "sample": run_sample}

    def predict(**kw):
        return lambda: model.predict_actions(**inputs, noise=noise, **kw)

    def sample():
        with torch.no_grad():
            return model.sample(context, state, action_mask, noise=noise)

    def in_bare(fn):
        def run():
            with bare(model):
                return fn()
        return run

    def with_noop(fn):
        def run():
            with model.hooks(noop):
                return fn()
        return run

    arms = {
        "bare": levels(in_bare(predict()), in_bare(sample)),
        "plain": levels(predict(), sample),
        "noop": levels(with_noop(predict()), with_noop(sample)),
        "cache-none": levels(lambda: model.run_with_cache(**inputs, noise=noise,
                                                          names_filter=lambda n: False),
                             lambda: model.sample_with_cache(context, state, action_mask,
                                                             noise=noise,
                                                             names_filter=lambda n: False)),
        "cache-1-pattern": levels(lambda: model.run_with_cache(**inputs, noise=noise,
                                                               names_filter=pattern),
                                  lambda: model.sample_with_cache(context, state, action_mask,
                                                                  noise=noise,
                                                                  names_filter=pattern)),
    }
    times = {a: {lvl: [] for lvl in ("predict_actions", "sample")} for a in arms}
    for _ in range(warmup):
        for arm in arms.values():
            for fn in arm.values():
                fn()
    rng = random.Random(0)
    runs = [(name, level) for name in arms for level in ("predict_actions", "sample")]
    for _ in range(reps):
        rng.shuffle(runs)
        for name, level in runs:
            times[name][level].append(_time(arms[name][level], sync))

    _, cache = model.run_with_cache(**inputs, noise=noise, names_filter=pattern)
    with model.hooks([(pattern, lambda x, hook: None)]):
        explicit = [layer.attn.explicit for layer in model.dit.layers]
    every = cache[pattern].numel() * cache[pattern].element_size() * cfg.dit.num_layers
    return {"label": label, "reps": reps, "warmup": warmup, "batch_size": batch_size,
            "hook_points": len(model.hook_points), "noop_hooks": len(noop),
            "times_s": times, "pattern": pattern,
            "cache_entries": len(cache), "cache_bytes": cache.nbytes,
            "pattern_shape": tuple(cache[pattern].shape), "all_layers_bytes": every,
            "explicit_layers": [i for i, e in enumerate(explicit) if e]}


def format_hook_overhead(result: dict) -> str:
    """The report of `measure_hook_overhead`: ms per call per arm and level, the ratios side by
    side, and the memory of caching one pattern."""
    times = result["times_s"]
    med = {a: {lvl: statistics.median(ts) for lvl, ts in d.items()} for a, d in times.items()}
    q25 = {a: {lvl: _quartile(ts) for lvl, ts in d.items()} for a, d in times.items()}
    label = result.get("label", f"tiny preset, CPU, 1 thread, batch {result['batch_size']}")
    lines = [f"{label}, {result['reps']} interleaved rounds; ms per call as median / 25th "
             "percentile (median ratio to 'plain')",
             f"{'arm':<17}{'predict_actions':>30}{'sample (DiT loop)':>30}"]
    for a in times:
        cells = [f"{1e3 * med[a][lvl]:6.2f} / {1e3 * q25[a][lvl]:6.2f} "
                 f"({med[a][lvl] / med['plain'][lvl]:.3f})"
                 for lvl in ("predict_actions", "sample")]
        lines.append(f"{a:<17}{cells[0]:>30}{cells[1]:>30}")

    def ratio(arm: str, ref: str) -> str:
        return " | ".join(f"{stat[arm][lvl] / stat[ref][lvl]:.3f}" for stat in (med, q25)
                          for lvl in ("predict_actions", "sample"))

    pattern = result["pattern"]
    lines += [
        "\nratios side by side: median predict_actions | median sample | "
        "p25 predict_actions | p25 sample",
        f"  hooks attached, caching nothing (noop / plain):         {ratio('noop', 'plain')}",
        f"  caching one layer's pattern (cache-1-pattern / plain):  "
        f"{ratio('cache-1-pattern', 'plain')}",
        f"  hook points present, nothing attached (plain / bare):   {ratio('plain', 'bare')}",
        f"  run_with_cache selecting nothing (cache-none / plain):  "
        f"{ratio('cache-none', 'plain')}",
        f"\nmemory, caching {pattern}: cache holds {result['cache_entries']} entry, "
        f"{result['cache_bytes'] / 1024:.1f} KiB {result['pattern_shape']}; all layers' patterns "
        f"would be {result['all_layers_bytes'] / 1024:.1f} KiB. Layers on the explicit attention "
        f"path while attached: {result['explicit_layers']} (others stay on SDPA and "
        "materialise no pattern).",
    ]
    return "\n".join(lines)


def _quartile(samples) -> float:
    # statistics.quantiles needs two samples; a one-round dry run reports its only sample
    return statistics.quantiles(samples, n=4)[0] if len(samples) > 1 else samples[0]


def hook_overhead_ratios(result: dict) -> dict[str, dict[str, float]]:
    """Median ratios of `measure_hook_overhead`'s arms, per level: noop / plain (hooks attached,
    caching nothing), plain / bare, cache-none / plain and cache-1-pattern / plain."""
    med = {a: {lvl: statistics.median(ts) for lvl, ts in d.items()}
           for a, d in result["times_s"].items()}
    pairs = {"noop_over_plain": ("noop", "plain"), "plain_over_bare": ("plain", "bare"),
             "cache_none_over_plain": ("cache-none", "plain"),
             "cache_1_pattern_over_plain": ("cache-1-pattern", "plain")}
    return {name: {lvl: med[a][lvl] / med[b][lvl] for lvl in med[a]}
            for name, (a, b) in pairs.items()}
