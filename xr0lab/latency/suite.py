"""The GPU suite behind `xr0lab profile --suite gpu`: every full-size measurement of one XR-0
inference in one run, with the cost model's prediction for the same device beside each.

    python -m xr0lab profile --preset xr0 --device cuda --suite gpu --out data

writes `profile_<preset>_<device>.json` (e.g. profile_xr0_nvidia-h200.json) and its breakdown
plot (.png) into `--out`. Random weights in bf16, built where they run (`build_model`); prompts
are synthetic token ids around synthetic pixel values (no tokenizer, nothing downloaded). Parts,
in order, each guarded (a failure or a skip is recorded with its reason and the rest still runs):

  build          the model on the device: seconds, parameters, device memory after
  probe          achieved matmul FLOP/s, copy bandwidth, per-op cost (`probe_cuda`; `probe_cpu`
                 off CUDA), again at the end: the prediction runs on their mean
  inference      whole inferences with 3 views (the cost model's released workload, L = 304)
                 and 2 views (the released 2-view prompt layout): stage p50/p95/p99 over
                 `repeats` runs (vision, prefill, hand-off, each DiT step), warm-up runs apart,
                 peak device memory
  dit_loop       the N-step DiT loop, eager `sample`, eager static shapes, CUDA-graph replay
                 (`StaticDiTLoop`), timed interleaved, capture time apart
  timer_overhead stage timers on vs off, side by side
  hook_overhead  `xr0lab.latency.hook_overhead`'s arms on the full-size model
  realtime       `RealTimeRunner` driving the model at 30 Hz for a few seconds: latencies,
                 delays in ticks, late ticks, tick periods
  compile        the loop with a `torch.compile`d step, eager and graph-captured, re-timed side by
                 side with the eager and graph arms; compile time apart (last: the slowest part)

Derived from those (recomputed at every write): per-stage predicted/measured ratios on the probe
and on the datasheet entry of the same device (`DEVICES`, e.g. h200), each DiT-loop arm against
its roofline bound, the whole inference against the sum of stage rooflines, the launch overhead
refitted to the measured DiT steps, the RTX 4090 prediction over launch overheads (0, 2, 5,
10 us and the refit), and the targets as ratios side by side.

A global time budget (`SuiteSettings.budget_s`) bounds the run: a part whose estimate does not fit
what is left is skipped with that reason, and one that overruns is interrupted (SIGALRM, main
thread only). The record is rewritten after every part, so a run killed from outside still leaves
everything measured so far (`complete: false`). CUDA-only parts (graph capture, peak memory) are
skipped off CUDA with a recorded reason, so the same code runs on CPU as a dry run (the tests run
it on the mid preset with tiny counts).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from xr0lab.config import XR0Config
from xr0lab.latency.devices import Device, average_devices, matching_table_device
from xr0lab.latency.pipeline import (Pipeline, build_model, build_pipeline, profile_config,
                                     torch_dtype, workload_of)
from xr0lab.latency.records import SCHEMA, environment, refuse_overwrite
from xr0lab.latency.suite_report import (SUITE, json_default, derive, format_suite,
                                         is_suite_record)
from xr0lab.latency.timers import percentiles, time_interleaved



@dataclasses.dataclass(frozen=True)
class SuiteSettings:
    """The suite's counts and sizes. Defaults are the GPU run's (>= 50 samples behind every
    percentile); `dry_run()` shrinks the counts to seconds for a CPU check of the code path."""

    repeats: int = 100          # whole inferences timed per view count
    warmup: int = 5             # untimed inferences before them (reported apart)
    loop_repeats: int = 100     # DiT-loop calls timed per arm
    loop_warmup: int = 3
    hook_reps: int = 30         # interleaved rounds of the hook-overhead arms
    hook_warmup: int = 3
    timer_reps: int = 30        # timers-on / timers-off pairs
    realtime_s: float = 5.0     # seconds of RealTimeRunner at rate_hz
    rate_hz: float = 30.0
    probe_s: float = 0.5        # minimum seconds per probe measurement
    compile: bool = True        # the torch.compile part
    budget_s: float = 300.0     # the whole suite, build included (imports come before)
    views: tuple[int, ...] = (3, 2)   # the first is the record's main profile
    image_hw: tuple[int, int] = (256, 320)
    steps: int | None = None    # flow steps (None: the config's 5)

    def __post_init__(self) -> None:
        for name in ("repeats", "loop_repeats", "hook_reps", "timer_reps"):
            if getattr(self, name) < 1:
                raise ValueError(f"SuiteSettings.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("warmup", "loop_warmup", "hook_warmup"):
            if getattr(self, name) < 0:
                raise ValueError(f"SuiteSettings.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("realtime_s", "rate_hz", "probe_s", "budget_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"SuiteSettings.{name} must be > 0, got {getattr(self, name)}")
        if not self.views or any(v not in (1, 2, 3) for v in self.views):
            raise ValueError(f"SuiteSettings.views must be a non-empty tuple of 1, 2 or 3, got "
                             f"{self.views}")

    def part_names(self) -> tuple[str, ...]:
        """The parts a run records, in order (then "plot")."""
        return ("build", "probe", *(f"inference_{v}_views" for v in self.views), "dit_loop",
                "timer_overhead", "hook_overhead", "realtime", "compile", "probe_after")

    @classmethod
    def dry_run(cls, **changes) -> "SuiteSettings":
        """Tiny counts: every part runs once or twice (a check of the code path, not a
        measurement)."""
        small = dict(repeats=1, warmup=1, loop_repeats=1, loop_warmup=1, hook_reps=1,
                     hook_warmup=0, timer_reps=1, realtime_s=0.5, probe_s=0.02)
        return cls(**{**small, **changes})


class BudgetExceeded(Exception):
    """The suite's time budget ran out inside a part."""


class _Budget:
    """Seconds left of the suite's budget, and an alarm that interrupts a part overrunning it."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.start = time.perf_counter()
        self.alarm = (hasattr(signal, "setitimer")
                      and threading.current_thread() is threading.main_thread())

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return self.seconds - self.elapsed()

    @contextmanager
    def guard(self) -> Iterator[None]:
        if not self.alarm:
            yield
            return

        def expire(signum, frame):
            raise BudgetExceeded(f"time budget of {self.seconds:.0f} s exhausted after "
                                 f"{self.elapsed():.0f} s")

        previous = signal.signal(signal.SIGALRM, expire)
        signal.setitimer(signal.ITIMER_REAL, max(self.left(), 0.01))
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


class _Suite:
    """The running suite: the record, the budget, and the parts' bookkeeping."""

    def __init__(self, config: XR0Config, settings: SuiteSettings, *, device: str, dtype: str,
                 json_path: Path, log: Callable[[str], None]) -> None:
        import torch

        self.config, self.settings = config, settings
        self.device, self.dtype = device, dtype
        self.device_type = torch.device(device).type
        self.cuda = self.device_type == "cuda"
        self.sync = torch.cuda.synchronize if self.cuda else (lambda: None)
        self.json_path, self.log = json_path, log
        self.budget = _Budget(settings.budget_s)
        self.model = None
        self.pipelines: dict[int, Pipeline] = {}
        self.probes: list[Device] = []
        self.stop = False  # set on an interrupt from outside: no further parts
        self.record: dict[str, Any] = {}

    # -- bookkeeping -----------------------------------------------------------------------
    def part(self, name: str, fn: Callable[[], Any], *, needs_s: float = 0.0) -> Any:
        """Run one guarded part; its status, seconds and reason land in record["parts"]."""
        parts = self.record["parts"]
        left = self.budget.left()
        reason = None
        if self.stop:
            reason = "the run was interrupted earlier"
        elif needs_s > left:
            reason = (f"time budget: {left:.0f} s left of {self.budget.seconds:.0f} s, this part "
                      f"needs about {needs_s:.0f} s")
        if reason is not None:
            parts[name] = {"status": "skipped", "reason": reason}
            self.log(f"[suite] {name}: skipped ({reason})")
            self.write()
            return None
        self.log(f"[suite] {name} (at {self.budget.elapsed():.0f} s of "
                 f"{self.budget.seconds:.0f} s budget)")
        start = time.perf_counter()
        peak = self._reset_peak()
        result = None
        try:
            with self.budget.guard():
                result = fn()
            parts[name] = {"status": "ok"}
        except KeyboardInterrupt:
            parts[name] = {"status": "failed", "error": "interrupted (SIGINT, e.g. an outer "
                           "timeout)"}
            self.stop = True
        except BudgetExceeded as err:
            parts[name] = {"status": "failed", "error": str(err)}
            self.stop = True
        except Exception as err:  # one failure is recorded; the other parts still run
            parts[name] = {"status": "failed", "error": f"{type(err).__name__}: {err}"}
            self.log(f"[suite] {name} failed: {type(err).__name__}: {err}")
        parts[name]["seconds"] = time.perf_counter() - start
        if peak:
            parts[name]["peak_memory_bytes"] = self._peak()
        self.write()
        return result

    def _reset_peak(self) -> bool:
        if self.cuda:
            import torch

            torch.cuda.reset_peak_memory_stats()
        return self.cuda

    def _peak(self) -> int:
        import torch

        return int(torch.cuda.max_memory_allocated())

    def write(self) -> None:
        """The record as it stands, derived sections recomputed; written atomically."""
        rec = self.record
        rec["budget"] = {"budget_s": self.budget.seconds, "elapsed_s": self.budget.elapsed()}
        try:
            derive(rec, self.config)
            rec.pop("derive_error", None)
        except Exception as err:  # a derivation bug must not lose the measurements
            rec["derive_error"] = f"{type(err).__name__}: {err}"
        tmp = self.json_path.with_name(self.json_path.name + ".tmp")
        tmp.write_text(json.dumps(rec, indent=1, default=json_default))
        os.replace(tmp, self.json_path)

    # -- parts -------------------------------------------------------------------------------
    def build(self) -> dict:
        import torch

        start = time.perf_counter()
        self.model = build_model(self.config, device=self.device, dtype=self.dtype)
        self.sync()
        out = {"seconds": time.perf_counter() - start,
               "parameters": sum(p.numel() for p in self.model.parameters()),
               "parameter_bytes": sum(p.numel() * p.element_size()
                                      for p in self.model.parameters())}
        if self.cuda:
            out["device_memory_allocated_bytes"] = int(torch.cuda.memory_allocated())
        for views in self.settings.views:
            self.pipelines[views] = build_pipeline(
                self.config, model=self.model, device=self.device, dtype=self.dtype,
                views=views, image_hw=self.settings.image_hw, num_steps=self.settings.steps,
                synthetic=True)
        return out

    def probe(self) -> dict:
        from xr0lab.latency.probe import probe_cpu, probe_cuda

        s = self.settings.probe_s
        if self.cuda:
            dev = probe_cuda(dtype=torch_dtype(self.dtype), min_time_s=s)
        else:  # off CUDA the suite's probe is this CPU's, so the dry run exercises the record
            dev = probe_cpu(1, dtype=torch_dtype(self.dtype), min_time_s=s, copy_mb=64)
        self.probes.append(dev)
        self.record["probes"] = [dataclasses.asdict(p) for p in self.probes]
        self.record["probe_device"] = dataclasses.asdict(average_devices(self.probes))
        return dataclasses.asdict(dev)

    def inference(self, views: int) -> dict:
        from xr0lab.latency.profile import profile

        pipe = self.pipelines[views]
        result = profile(pipe, repeats=self.settings.repeats, warmup=self.settings.warmup)
        entry = {"views": views, "workload": dataclasses.asdict(workload_of(pipe, self.config,
                                                                            self.dtype)),
                 "preprocess_measured": pipe.preprocess_measured, **result}
        if self.cuda:
            entry["peak_memory_bytes"] = self._peak()
        self.record["inference"][f"{views} views"] = entry
        return entry

    def _context(self, pipe: Pipeline):
        import torch

        inputs = pipe.preprocess()
        with torch.no_grad():
            context = self.model.prefill(*(inputs[k] for k in ("input_ids", "attention_mask",
                                                              "pixel_values",
                                                              "image_grid_thw")))
        return inputs, context

    def _loop_arms(self, context, inputs, step=None, *, graph_too: bool):
        """(arms, setup seconds): the static loop with `step`, eager and (CUDA) graph-captured."""
        from xr0lab.latency.cuda_graph import StaticDiTLoop

        state, mask = inputs["state"], inputs["action_mask"]
        steps = self.settings.steps
        arms, setup = {}, {}
        start = time.perf_counter()
        eager = StaticDiTLoop(self.model, context, state, mask, num_steps=steps,
                              cuda_graph=False, step=step)
        setup["eager"] = time.perf_counter() - start
        arms["eager"] = eager
        if graph_too and self.cuda:
            start = time.perf_counter()
            graph = StaticDiTLoop(self.model, context, state, mask, num_steps=steps,
                                  cuda_graph=True, step=step)
            self.sync()
            setup["graph"] = time.perf_counter() - start
            arms["graph"] = graph
        return arms, setup

    def dit_loop(self) -> dict:
        import torch

        pipe = self.pipelines[self.settings.views[0]]
        inputs, context = self._context(pipe)
        noise = pipe.noise.float()
        loops, setup = self._loop_arms(context, inputs, graph_too=True)

        def sample():
            with torch.no_grad():
                return self.model.sample(context, inputs["state"], inputs["action_mask"],
                                         noise=noise, num_steps=self.settings.steps)

        arms = {"eager_sample": sample, "eager_static": lambda: loops["eager"](noise)}
        if "graph" in loops:
            arms["cuda_graph"] = lambda: loops["graph"](noise)
        timed = time_interleaved(arms, repeats=self.settings.loop_repeats,
                                 warmup=self.settings.loop_warmup, sync=self.sync)
        # The graph replays the same kernels: its output must equal the eager static loop's.
        agree = None
        if "graph" in loops:
            agree = float((loops["graph"](noise) - loops["eager"](noise)).abs().max())
        out = {"prompt_length": context.prompt_length, "num_steps": loops["eager"].num_steps,
               "arms": timed, "setup_s": {"eager_static": setup["eager"],
                                          **({"cuda_graph": setup["graph"]}
                                             if "graph" in setup else {})},
               "graph_vs_eager_max_abs_diff": agree,
               "cuda_graph": "graph" in loops}
        if not self.cuda:
            out["cuda_graph_skipped"] = "CUDA graphs need a CUDA device"
        self.record["dit_loop"] = out
        return out

    def timer_overhead(self) -> dict:
        from xr0lab.latency.profile import timer_overhead

        out = timer_overhead(self.pipelines[self.settings.views[0]],
                             repeats=self.settings.timer_reps, warmup=1)
        self.record["timer_overhead"] = out
        return out

    def hook_overhead(self) -> dict:
        from xr0lab.latency.hook_overhead import hook_overhead_ratios, measure_hook_overhead

        pipe = self.pipelines[self.settings.views[0]]
        result = measure_hook_overhead(
            self.settings.hook_reps, model=self.model, inputs=pipe.preprocess(),
            warmup=self.settings.hook_warmup,
            label=f"{self.config.name} preset, {self.record['device']['name']}, "
                  f"{self.dtype}, {pipe_views(pipe)} views")
        out = {**result, "ratios": hook_overhead_ratios(result)}
        self.record["hook_overhead"] = out
        return out

    def realtime(self) -> dict:
        from xr0lab.runtime import ExecutorConfig, ModelPolicy, RealTimeRunner

        pipe = self.pipelines[self.settings.views[0]]
        host = {k: v.cpu() for k, v in pipe.preprocess().items()}  # frames arrive on the host
        dev = self.device
        model_policy = ModelPolicy(self.model, lambda obs: {k: v.to(dev) for k, v in obs.items()})

        def policy(observation, prefix, prefix_length, **kw):
            # the chunk is handed to the robot on the host, copied in the inference thread so the
            # control loop never waits on the device
            return model_policy(observation, prefix, prefix_length, **kw).cpu()

        H = self.config.action.chunk_length
        k = min(10, H - 1)  # the release triggers with k = 10 actions left
        cfg = ExecutorConfig(chunk_length=H, execution_horizon=H - k, delay=min(3, k),
                             prefix_length=0, strategy="naive")
        rate = self.settings.rate_hz
        n_ticks = max(2, int(round(self.settings.realtime_s * rate)))
        executed = []
        timeline = RealTimeRunner(policy, cfg, rate_hz=rate).run(
            lambda: host, lambda a: executed.append(a is not None), n_ticks)
        periods = timeline.periods()
        chunks = [{"id": c.id, "trigger_tick": c.trigger_tick, "arrival_tick": c.arrival_tick,
                   "delay_ticks": c.delay_ticks, "delay_estimate": c.delay_estimate,
                   "latency_s": c.latency_s} for c in timeline.chunks]
        lat = [c["latency_s"] for c in chunks if c["latency_s"] is not None]
        out = {"rate_hz": rate, "ticks": n_ticks, "executor": dataclasses.asdict(cfg),
               "strategy_note": "naive: the release mode conditions on no prefix",
               "chunks": chunks, "latency": percentiles(lat) if lat else None,
               "delay_ticks": percentiles([c["delay_ticks"] for c in chunks]) if chunks else None,
               "late_ticks": timeline.late_ticks, "counts": timeline.counts(),
               "ticks_with_action": int(sum(executed)),
               "period": percentiles(periods.tolist()) if len(periods) else None,
               "invalid_chunks": len(getattr(timeline, "invalid_chunks", ()) or ())}
        self.record["realtime"] = out
        return out

    def compiled(self) -> dict:
        import torch

        pipe = self.pipelines[self.settings.views[0]]
        inputs, context = self._context(pipe)
        noise = pipe.noise.float()
        start = time.perf_counter()
        step = torch.compile(self.model.denoise_step, dynamic=False)
        loops, setup = self._loop_arms(context, inputs, graph_too=True)
        compiled, _ = self._loop_arms(context, inputs, step, graph_too=False)
        first = time.perf_counter()
        compiled["eager"](noise)  # compilation happens here
        self.sync()
        compile_s = time.perf_counter() - first
        arms = {"eager_static": lambda: loops["eager"](noise),
                "compiled": lambda: compiled["eager"](noise)}
        notes = {}
        if "graph" in loops:
            arms["cuda_graph"] = lambda: loops["graph"](noise)
            try:  # the compiled kernels captured as one graph (what mode="reduce-overhead" does)
                start_graph = time.perf_counter()
                compiled_graph, _ = self._loop_arms(context, inputs, step, graph_too=True)
                self.sync()
                setup["compiled_graph"] = time.perf_counter() - start_graph
                arms["compiled_graph"] = lambda: compiled_graph["graph"](noise)
            except Exception as err:
                notes["compiled_graph"] = f"capture failed: {type(err).__name__}: {err}"
        else:
            notes["compiled_graph"] = "CUDA graphs need a CUDA device"
        timed = time_interleaved(arms, repeats=self.settings.loop_repeats,
                                 warmup=self.settings.loop_warmup, sync=self.sync)
        diff = float((compiled["eager"](noise) - loops["eager"](noise)).abs().max())
        out = {"num_steps": loops["eager"].num_steps, "arms": timed, "compile_s": compile_s,
               "total_setup_s": time.perf_counter() - start,
               "setup_s": setup, "notes": notes, "compiled_vs_eager_max_abs_diff": diff,
               "torch_compile": "torch.compile(model.denoise_step, dynamic=False)"}
        self.record["dit_loop_compiled"] = out
        return out


def pipe_views(pipe: Pipeline) -> int:
    grid = pipe.preprocess()["image_grid_thw"]
    return int(grid.shape[0])


def _gpu_environment(device: str) -> dict:
    """CUDA device properties and the driver version (nvidia-smi, when it answers)."""
    import torch

    dev = torch.device(device)
    props = torch.cuda.get_device_properties(dev)
    out = {"capability": list(torch.cuda.get_device_capability(dev)),
           "memory_bytes": int(props.total_memory),
           "multiprocessors": int(props.multi_processor_count),
           "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()}
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20, check=True)
        out["driver"] = smi.stdout.strip().splitlines()[0]
    except Exception as err:  # recorded, not fatal: the versions above still identify the run
        out["driver"] = None
        out["driver_error"] = f"{type(err).__name__}: {err}"
    return out


def suite_paths(preset: str, device: str, out: str | Path | None = None,
                tag: str = "") -> tuple[Path, Path]:
    """(json, png) paths the suite writes: `out`/profile_<preset>_<device>[_<tag>].json/.png."""
    from xr0lab.latency.profile import device_slug
    from xr0lab.workspace.paths import data_dir

    out_dir = Path(out) if out else data_dir()
    stem = f"profile_{preset}_{device_slug(device)}{('_' + tag) if tag else ''}"
    return out_dir / f"{stem}.json", out_dir / f"{stem}.png"


def run_suite(preset: str = "xr0", *, device: str = "cuda", dtype: str | None = None,
              settings: SuiteSettings | None = None, threads: int = 1,
              out: str | Path | None = None, tag: str = "", overwrite: bool = False,
              argv: Sequence[str] | None = None, log: Callable[[str], None] | None = None) -> dict:
    """Run every part (see the module docstring) and write the record and its plot.

    Returns the record with "path" set to the JSON file. An existing output is an
    `OutputExistsError` before anything runs, unless `overwrite`. dtype: bfloat16 on CUDA,
    float32 on CPU. `threads` sets torch's intra-op threads for the host side.
    """
    import torch

    settings = settings or SuiteSettings()
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    device_type = torch.device(device).type
    if device_type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but torch.cuda.is_available() is False")
    if device_type not in ("cuda", "cpu"):
        raise ValueError(f"the suite runs on cuda or cpu, got {device!r}")
    json_path, png_path = suite_paths(preset, device, out, tag)
    refuse_overwrite([json_path, png_path], overwrite=overwrite)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(threads)
    dtype = dtype or ("bfloat16" if device_type == "cuda" else "float32")
    config = profile_config(preset, num_steps=settings.steps)

    suite = _Suite(config, settings, device=device, dtype=dtype, json_path=json_path, log=log)
    env = environment(device_type, dtype)
    if device_type == "cuda":
        env["device"].update(_gpu_environment(device))
    table = matching_table_device(env["device"]["name"]) if device_type == "cuda" else None
    suite.record = {
        "schema": SCHEMA, "suite": SUITE, "complete": False,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "preset": config.name, "config": dataclasses.asdict(config), **env,
        "table_device": None if table is None else table.name,
        "settings": {**dataclasses.asdict(settings), "device": device, "threads": threads,
                     "attn_implementation": config.attn_implementation,
                     "weights": "random (timing only)", "prompt": "synthetic token ids",
                     "argv": list(argv) if argv is not None else sys.argv[1:]},
        "parts": {}, "inference": {}, "preprocess_measured": False,
    }
    est = _Estimates(settings)
    log(f"[suite] {config.name} on {env['device']['name']} ({dtype}); time budget "
        f"{settings.budget_s:.0f} s; the record is rewritten after every part: {json_path}")
    suite.part("build", lambda: suite.record.__setitem__("build", suite.build()))
    if suite.model is None:  # nothing else can run; the record says why
        for name in settings.part_names()[1:]:
            suite.record["parts"][name] = {"status": "skipped", "reason": "no model (build "
                                           f"{suite.record['parts']['build']['status']})"}
        return _finish(suite, png_path)
    suite.part("probe", suite.probe, needs_s=3 * settings.probe_s * 3)
    for views in settings.views:
        suite.part(f"inference_{views}_views", lambda v=views: suite.inference(v),
                   needs_s=est.inference(suite.record))
    suite.part("dit_loop", suite.dit_loop, needs_s=est.loop(suite.record, arms=3))
    suite.part("timer_overhead", suite.timer_overhead,
               needs_s=est.whole(suite.record) * 2 * (settings.timer_reps + 1))
    suite.part("hook_overhead", suite.hook_overhead, needs_s=est.hooks(suite.record))
    suite.part("realtime", suite.realtime,
               needs_s=settings.realtime_s + 2 * est.whole(suite.record))
    if settings.compile:
        suite.part("compile", suite.compiled, needs_s=est.compile(suite.record, device_type))
    else:
        suite.record["parts"]["compile"] = {"status": "skipped",
                                            "reason": "disabled (--no-compile)"}
    suite.part("probe_after", suite.probe, needs_s=3 * settings.probe_s * 3)
    _peak_summary(suite)
    suite.record["complete"] = not suite.stop
    return _finish(suite, png_path)


class _Estimates:
    """Seconds a part needs, from what the suite has measured so far (for the budget check)."""

    def __init__(self, settings: SuiteSettings) -> None:
        self.s = settings

    def whole(self, rec: dict) -> float:
        totals = [e["total"]["p50"] for e in rec.get("inference", {}).values()]
        return max(totals) if totals else 0.0

    def dit(self, rec: dict) -> float:
        stages = next(iter(rec.get("inference", {}).values()), {}).get("stages", {})
        return sum(v["p50"] for k, v in stages.items() if k.startswith("dit_step_"))

    def inference(self, rec: dict) -> float:
        return self.whole(rec) * (self.s.repeats + self.s.warmup)

    def loop(self, rec: dict, arms: int) -> float:
        return self.dit(rec) * arms * (self.s.loop_repeats + self.s.loop_warmup)

    def hooks(self, rec: dict) -> float:
        return 5 * (self.whole(rec) + self.dit(rec)) * (self.s.hook_reps + self.s.hook_warmup)

    def compile(self, rec: dict, device_type: str) -> float:
        # Inductor on the full-size DiT step takes about a minute or two on a cold cache; the
        # estimate keeps the last part from starting where it cannot finish.
        base = 60.0 if device_type == "cuda" and rec["preset"] == "xr0" else 0.0
        return base + self.loop(rec, arms=4)


def _peak_summary(suite: _Suite) -> None:
    if not suite.cuda:
        suite.record["peak_memory"] = {"status": "skipped",
                                       "reason": "torch.cuda.max_memory_allocated needs CUDA"}
        return
    per_part = {k: v["peak_memory_bytes"] for k, v in suite.record["parts"].items()
                if "peak_memory_bytes" in v}
    suite.record["peak_memory"] = {"status": "ok", "max_bytes": max(per_part.values(), default=0),
                                   "per_part_bytes": per_part}


def _finish(suite: _Suite, png_path: Path) -> dict:
    from xr0lab.plots.figure import save_figure
    from xr0lab.plots.latency import plot_suite

    suite.write()
    try:
        save_figure(plot_suite(suite.record), png_path, dpi=120, tight=False)
        suite.record["parts"]["plot"] = {"status": "ok"}
    except Exception as err:  # the measurements matter more than their picture
        suite.record["parts"]["plot"] = {"status": "failed", "error": f"{type(err).__name__}: "
                                                                        f"{err}"}
    suite.write()
    rec = dict(suite.record)
    rec["path"] = str(suite.json_path)
    return rec


__all__ = ["SuiteSettings", "run_suite", "format_suite", "suite_paths", "derive",
           "is_suite_record", "BudgetExceeded"]
