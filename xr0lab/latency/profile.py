"""Profiles of one XR-0 inference: timed stage samples (`profile`), the timers' own cost, the
speed options and the DiT loop measured side by side, and `run_profile`, which does all of it
for `xr0lab profile` and writes the record (`xr0lab.latency.records`) and its plot.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from xr0lab.config import XR0Config
from xr0lab.latency.devices import Device, average_devices
from xr0lab.latency.opcount import stage_costs
from xr0lab.latency.pipeline import (Pipeline, build_pipeline, default_dtype, profile_config,
                                     torch_dtype, workload_of)
from xr0lab.latency.probe import probe_cpu, probe_cuda
from xr0lab.latency.records import make_record, refuse_overwrite
from xr0lab.latency.roofline import predict_stage, stage_group
from xr0lab.latency.speed_options import SpeedOption, speed_options
from xr0lab.latency.timers import Clock, StageTimer, percentiles


def profile(pipeline: Pipeline, *, repeats: int = 20, warmup: int = 2,
            trace_path: str | Path | None = None) -> dict:
    """Time `repeats` inferences after `warmup` ones; returns stage samples and percentiles.

    Warm-up runs (first-call allocation, lazy inits, compilation) are reported separately with
    their own stage split. With `trace_path`, one extra inference runs under torch.profiler and
    its Chrome trace is written there (outside the timed runs).
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {repeats}, {warmup}")
    warm, runs = [], []
    with StageTimer(pipeline.model, pipeline.device_type) as timer:
        for i in range(warmup + repeats):
            total = pipeline.timed_total(timer)
            stages = timer.stages()
            (warm if i < warmup else runs).append({"total_s": total, "stages": stages})
    per_stage = {n: [r["stages"][n] for r in runs] for n in runs[0]["stages"]}
    totals = [r["total_s"] for r in runs]
    out = {
        "warmup": warm,
        "stages": {n: {"samples_s": xs, **percentiles(xs)} for n, xs in per_stage.items()},
        "total": {"samples_s": totals, **percentiles(totals)},
    }
    if trace_path is not None:
        out["trace"] = str(write_trace(pipeline, trace_path))
    return out


def write_trace(pipeline: Pipeline, path: str | Path) -> Path:
    """One inference under torch.profiler (CPU, plus CUDA when on GPU); a Chrome trace file."""
    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    activities = [ProfilerActivity.CPU]
    if pipeline.device_type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch_profile(activities=activities) as prof:
        with torch.profiler.record_function("xr0lab.inference"):
            pipeline.run()
        Clock(pipeline.device_type).sync()
    prof.export_chrome_trace(str(path))
    return path


def timer_overhead(pipeline: Pipeline, *, repeats: int = 30, warmup: int = 2) -> dict:
    """Timers-on vs timers-off, measured side by side (alternating runs, so machine noise hits
    both arms alike). Returns the medians and their ratio."""
    for _ in range(warmup):
        pipeline.timed_total()
    on, off = [], []
    with StageTimer(pipeline.model, pipeline.device_type) as timer:
        for i in range(2 * repeats):
            if i % 2:
                off.append(_untimed(pipeline, timer))
            else:
                on.append(pipeline.timed_total(timer))
                timer.stages()  # reading the marks is part of the timers' cost
    paired = np.asarray(on) / np.asarray(off)  # neighbours in time share the machine's load
    return {"on_p50_s": float(np.median(on)), "off_p50_s": float(np.median(off)),
            "ratio": float(np.median(on) / np.median(off)),
            "paired_ratio_p50": float(np.median(paired)),
            "paired_ratio_iqr": [float(np.percentile(paired, 25)),
                                 float(np.percentile(paired, 75))], "repeats": repeats}


def _untimed(pipeline: Pipeline, timer: StageTimer) -> float:
    """A run with the timer's hooks temporarily detached (the model as users run it)."""
    timer.__exit__(None, None, None)
    try:
        return pipeline.timed_total()
    finally:
        timer.__enter__()


def compare_pipelines(pipelines: dict[str, Pipeline], *, repeats: int = 10,
                      warmup: int = 1) -> dict[str, dict]:
    """Median total per pipeline, runs interleaved round-robin; ratio to the first one."""
    for p in pipelines.values():
        for _ in range(warmup):
            p.timed_total()
    samples: dict[str, list[float]] = {k: [] for k in pipelines}
    for _ in range(repeats):
        for k, p in pipelines.items():
            samples[k].append(p.timed_total())
    base = float(np.median(next(iter(samples.values()))))
    return {k: {"p50_s": float(np.median(v)), "ratio": float(np.median(v)) / base,
                "samples_s": v} for k, v in samples.items()}


def speed_option_pipelines(config: XR0Config, base: Pipeline, *, device: str, dtype: str,
                           views: int, image_hw: tuple[int, int], compile_step: bool = False
                           ) -> dict[str, tuple[Pipeline, XR0Config]]:
    """The baseline and its speed options (`xr0lab.latency.speed_options`) as pipelines: one flow
    step, a VLM truncated to half its layers (new random weights), one view fewer, half
    resolution, and optionally a torch.compile'd denoising step (slow to build: ~20-30 s on
    CPU)."""
    import torch

    options = speed_options(config, num_steps=base.num_steps, views=views, image_hw=image_hw,
                            vlm_layers=config.vlm.num_layers, dit_layers=config.dit.num_layers,
                            fewer_steps=(1,), vlm_cut=config.vlm.num_layers // 2)
    same = dict(device=device, dtype=dtype, views=views, image_hw=image_hw)
    out = {o.label: _option_pipeline(o, config, base, same) for o in options}
    if compile_step:
        from xr0lab.model.xr0 import XR0Model

        with default_dtype(torch_dtype(dtype)), torch.device(device):
            compiled = XR0Model(config, vlm=base.model.vlm).eval()
        compiled.load_state_dict(base.model.state_dict())
        compiled.denoise_step = torch.compile(compiled.denoise_step, dynamic=False)
        out["compiled DiT step"] = (dataclasses.replace(base, model=compiled), config)
    return out


def _option_pipeline(option: SpeedOption, config: XR0Config, base: Pipeline,
                     same: dict) -> tuple[Pipeline, XR0Config]:
    """The pipeline of one speed option, and the config it runs."""
    if option.vlm_layers is not None:  # a different model: new random weights
        cut = config.replace(
            vlm=dataclasses.replace(config.vlm, num_layers=option.vlm_layers),
            dit=dataclasses.replace(config.dit,
                                    num_layers=option.dit_layers or config.dit.num_layers))
        return build_pipeline(cut, num_steps=base.num_steps, **same), cut
    inputs = {k: v for k, v in (("views", option.views), ("image_hw", option.image_hw))
              if v is not None}
    if inputs:  # the same model on other inputs
        return build_pipeline(config, model=base.model, num_steps=base.num_steps,
                              **{**same, **inputs}), config
    if option.num_steps is not None:
        return dataclasses.replace(base, num_steps=option.num_steps), config
    return base, config


def measure_speed_options(config: XR0Config, base: Pipeline, *, device: str, dtype: str,
                          views: int, image_hw: tuple[int, int], probe: Device | None = None,
                          compile_step: bool = False, repeats: int = 10) -> list[dict]:
    """Measured ratio of each speed option to the baseline (side by side), and the cost model's
    predicted ratio on the probe device where one is given. Compilation time is reported from
    the warm-up run."""
    pipes = speed_option_pipelines(config, base, device=device, dtype=dtype, views=views,
                                   image_hw=image_hw, compile_step=compile_step)
    first_call = {}
    for label, (p, _) in pipes.items():
        first_call[label] = p.timed_total()  # includes compilation for the compiled variant
    measured = compare_pipelines({k: v[0] for k, v in pipes.items()}, repeats=repeats)
    rows = []
    base_pred = None
    for label, (p, cfg) in pipes.items():
        pred = None
        if probe is not None:
            # a compiled step is predicted as the DiT stages with their elementwise ops fused
            fused = "elementwise" if label == "compiled DiT step" else "none"
            pred = sum(predict_stage(
                st, probe, fused if stage_group(st.name) == "dit" else "none").seconds
                for st in stage_costs(cfg, workload_of(p, cfg, dtype)))
            base_pred = base_pred or pred
        rows.append({"option": label, "p50_ms": measured[label]["p50_s"] * 1e3,
                     "ratio": measured[label]["ratio"],
                     "predicted_ratio": None if pred is None else pred / base_pred,
                     "first_call_s": first_call[label]})
    return rows


def dit_loop_comparison(pipeline: Pipeline, device: Device, *,
                        repeats: int = 20) -> dict:
    """The DiT loop alone: eager `sample` vs the static-shape loop (a CUDA graph on GPU), side by
    side, with the loop's roofline bound on `device`
    (`xr0lab.latency.cuda_graph.compare_dit_loop`)."""
    import torch

    from xr0lab.latency.cuda_graph import compare_dit_loop

    inputs = pipeline.preprocess()
    prompt = {k: inputs[k] for k in ("input_ids", "attention_mask", "pixel_values",
                                     "image_grid_thw")}
    with torch.no_grad():
        context = pipeline.model.prefill(**prompt)
    return compare_dit_loop(pipeline.model, context, inputs["state"], inputs["action_mask"],
                            device=device, repeats=repeats)



def run_profile(preset: str = "tiny", *, device: str = "cpu", dtype: str | None = None,
                threads: int = 1, views: int | None = None,
                image_hw: tuple[int, int] | None = None, steps: int | None = None,
                batch: int = 1, repeats: int = 20, warmup: int = 2, compile_step: bool = False,
                trace: bool = False, with_overhead: bool = False,
                with_speed_options: bool = False, out: str | Path | None = None, tag: str = "",
                argv: Sequence[str] | None = None, overwrite: bool = False) -> dict:
    """Time every stage of one configuration; write the record to
    `out`/profile_<preset>_<device>[_<tag>].json and its breakdown plot next to it (.png).

    Returns the record, with "path" set to the JSON file (as `load_profiles` does). Defaults:
    dtype float32 on CPU, bfloat16 on GPU; 3 views at 256x320 for "xr0", else 2 at 128x128;
    `out` data/. `with_overhead` adds timers-on vs timers-off, `with_speed_options` the DiT loop
    and the speed options, each measured side by side. `argv` is the command line the record
    keeps (default: this process's). An existing output file is an `OutputExistsError` (raised
    before anything is measured) unless `overwrite`.
    """
    import torch

    from xr0lab.plots.figure import save_figure
    from xr0lab.plots.latency import plot_breakdown
    from xr0lab.workspace.paths import data_dir

    device_type = torch.device(device).type
    if device_type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but torch.cuda.is_available() is False")
    dtype = dtype or ("bfloat16" if device_type == "cuda" else "float32")
    views = views or (3 if preset == "xr0" else 2)
    image_hw = tuple(image_hw or ((256, 320) if preset == "xr0" else (128, 128)))
    out_dir = Path(out) if out else data_dir()
    slug = device_slug(device)
    run_name = f"{preset}_{slug}{('_' + tag) if tag else ''}"
    stem = f"profile_{run_name}"
    trace_path = out_dir / f"trace_{run_name}.json"
    refuse_overwrite([out_dir / f"{stem}.json", out_dir / f"{stem}.png",
                      *([trace_path] if trace else [])], overwrite=overwrite)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(threads)

    config = profile_config(preset, num_steps=steps)
    pipeline = build_pipeline(config, device=device, dtype=dtype, views=views,
                              image_hw=image_hw, batch=batch, num_steps=steps)
    if compile_step:
        pipeline.model.denoise_step = torch.compile(pipeline.model.denoise_step, dynamic=False)

    def run_probe() -> Device:
        if device_type == "cuda":
            return probe_cuda(dtype=torch_dtype(dtype))
        return probe_cpu(threads, dtype=torch_dtype(dtype))

    probes = [run_probe()]  # and one after the timed runs: machine load drifts on shared hosts
    result = profile(pipeline, repeats=repeats, warmup=warmup,
                     trace_path=trace_path if trace else None)
    settings = {"views": views, "image_hw": list(image_hw), "batch": batch,
                "num_steps": pipeline.num_steps, "repeats": repeats,
                "warmup": warmup, "compile": compile_step,
                "attn_implementation": config.attn_implementation, "threads": threads,
                "argv": list(argv) if argv is not None else sys.argv[1:]}
    probes.append(run_probe())
    probe = average_devices(probes)
    record = make_record(config, pipeline, result, settings=settings, dtype=dtype, probe=probe)
    record["probes"] = [dataclasses.asdict(p) for p in probes]
    if with_overhead:
        record["timer_overhead"] = timer_overhead(pipeline)
    if with_speed_options:
        record["dit_loop"] = dit_loop_comparison(pipeline, probe, repeats=repeats)
        record["speed_options"] = measure_speed_options(config, pipeline, device=device,
                                                        dtype=dtype, views=views,
                                                        image_hw=image_hw, probe=probe,
                                                        compile_step=True)
    json_path = out_dir / f"{stem}.json"
    json_path.write_text(json.dumps(record, indent=1))
    save_figure(plot_breakdown(record), out_dir / f"{stem}.png", dpi=120, tight=False)
    record["path"] = str(json_path)
    return record


def device_slug(device: str) -> str:
    """The device part of a profile's file name: "cpu", or the CUDA device's name as a slug
    ("NVIDIA H200" -> "nvidia-h200")."""
    import torch

    if torch.device(device).type == "cpu":
        return "cpu"
    return _slug(torch.cuda.get_device_name(torch.device(device)))


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")
