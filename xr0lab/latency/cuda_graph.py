"""The DiT denoising loop with static shapes, replayed as a CUDA graph on GPU.

At full size the DiT is tiny in FLOPs; each of its 5 steps launches ~1,300 small kernels, so on a
GPU the loop is bound by launch overhead rather than math (see `xr0lab.latency.roofline`).
Capturing the whole N-step loop once as a CUDA graph and replaying it removes the per-kernel CPU
launch cost.

Everything that varies per call lives in preallocated buffers (noise, prefix, the context's K/V
and prompt mask); `__call__` copies new values in and replays. On CPU there is nothing to capture
and the same static loop runs eagerly — it is bit-identical to `FlowActionExpert.sample`, which is
what the tests check (the capture itself needs a GPU).

Axes: B batch, T chunk length, A action dims, L prompt length.
"""

from __future__ import annotations

import torch

from xr0lab.model.expert import FlowActionExpert
from xr0lab.config import ModeConfig
from xr0lab.flow import integrate
from xr0lab.model.vlm import VLMContext


class StaticDiTLoop:
    """A reusable, shape-frozen sampler for one (B, L, T, p, N) configuration.

        loop = StaticDiTLoop(model, context, state, action_mask)
        actions = loop(noise)                  # replays the captured graph on CUDA
        loop.update_context(next_context)      # same shapes, new observation

    `step` replaces the network step (same signature as `model.denoise_step`), e.g. a
    `torch.compile`d one; with `cuda_graph=True` its kernels are captured like the eager ones.
    """

    def __init__(self, model: FlowActionExpert, context: VLMContext, state: torch.Tensor,
                 action_mask: torch.Tensor, *, num_steps: int | None = None,
                 prefix_length: int = 0, mode: ModeConfig | None = None,
                 cuda_graph: bool | None = None, warmup: int = 2, step=None) -> None:
        self.model = model
        self.step = model.denoise_step if step is None else step
        self.num_steps = num_steps or model.config.flow.num_steps
        self.prefix_length = prefix_length
        dev = model.device
        B, T = action_mask.shape[:2]
        A = model.config.action.action_dim
        # Static copies of everything a call may change; the graph reads these addresses.
        self.context = VLMContext(
            keys=tuple(k.detach().clone() for k in context.keys),
            values=tuple(v.detach().clone() for v in context.values),
            prompt_mask=context.prompt_mask.clone(), positions=context.positions.clone(),
            vlm_layers=context.vlm_layers, image_token_mask=context.image_token_mask)
        self.state = state.to(dev).clone()
        self.action_mask = action_mask.to(dev).clone()
        self.noise = torch.zeros(B, T, A, device=dev)
        self.prefix = torch.zeros(B, max(prefix_length, 1), A, device=dev)
        with torch.no_grad():
            # The loop integrates in fp32 (the precise path), so its rotary tables are the
            # precise ones too, whatever the config's numerics say.
            self.setup = model.prepare(self.context, self.state, T, prefix_length=prefix_length,
                                       mode=mode, numerics="precise")
        self.cuda_graph = dev.type == "cuda" if cuda_graph is None else cuda_graph
        if self.cuda_graph and dev.type != "cuda":
            raise ValueError(f"cuda_graph=True needs the model on a CUDA device, it is on {dev}")
        self.graph: torch.cuda.CUDAGraph | None = None
        self.out: torch.Tensor | None = None
        if self.cuda_graph:
            self._capture(warmup)

    def _loop(self) -> torch.Tensor:
        step, s, ctx = self.step, self.setup, self.context
        return integrate(lambda x, t: step(s, ctx, x, t, self.action_mask), self.noise,
                         self.num_steps, prefix=self.prefix if self.prefix_length else None,
                         prefix_length=self.prefix_length)

    @torch.no_grad()
    def _capture(self, warmup: int) -> None:
        # Warm up on a side stream (lazy inits, cuBLAS workspaces) before capturing, as CUDA
        # graph capture requires.
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(warmup):
                self._loop()
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.out = self._loop()

    def update_context(self, context: VLMContext) -> None:
        """Copy a new observation's context into the static buffers (same shapes only).

        The mask and positions baked into the setup depend on the prompt mask and positions, so
        those must be unchanged too (same prompt layout: same views, resolution and text length).
        """
        if len(context.keys) != len(self.context.keys):
            raise ValueError(f"context has {len(context.keys)} layers, the loop was built for "
                             f"{len(self.context.keys)}")
        for name in ("prompt_mask", "positions"):
            if not torch.equal(getattr(context, name).to(self.noise.device),
                               getattr(self.context, name)):
                raise ValueError(f"context.{name} differs from the one the loop was built with; "
                                 "build a new StaticDiTLoop for a new prompt layout")
        for dst, src in zip(self.context.keys + self.context.values,
                            context.keys + context.values):
            if dst.shape != src.shape:
                raise ValueError(f"context K/V shape {tuple(src.shape)} differs from the static "
                                 f"{tuple(dst.shape)}")
            dst.copy_(src)

    @torch.no_grad()
    def __call__(self, noise: torch.Tensor, prefix: torch.Tensor | None = None) -> torch.Tensor:
        """Normalised actions (B, T, A) from `noise` (and the clean prefix, if built with one)."""
        if tuple(noise.shape) != tuple(self.noise.shape):
            raise ValueError(f"noise must have the static shape {tuple(self.noise.shape)}, got "
                             f"{tuple(noise.shape)}")
        self.noise.copy_(noise)
        if self.prefix_length:
            if prefix is None or prefix.shape[1] < self.prefix_length:
                raise ValueError(f"this loop commits a prefix of {self.prefix_length} steps; pass "
                                 f"prefix with at least that many, got "
                                 f"{None if prefix is None else tuple(prefix.shape)}")
            self.prefix.copy_(prefix[:, :self.prefix_length])
        elif prefix is not None:
            raise ValueError("this loop was built with prefix_length=0; build one with a prefix")
        if self.graph is None:
            return self._loop()
        self.graph.replay()
        return self.out.clone()


def dit_loop_stages(model: FlowActionExpert, context: VLMContext, chunk_length: int, *,
                    num_steps: int | None = None, dtype_bytes: int = 2):
    """The op counts (`StageCost`) of the N DiT steps for this context's prompt length."""
    from xr0lab.latency.opcount import stage_costs
    from xr0lab.latency.workload import Workload

    cfg = model.config
    steps = num_steps or cfg.flow.num_steps
    # The DiT's cost depends on the prompt only through its length L: describe it as one 32x32
    # view (one visual token) plus L - 1 text tokens.
    workload = Workload(
        name="dit-loop", views=1, image_hw=(cfg.vlm.pixels_per_token,) * 2,
        text_tokens=context.prompt_length - 1, chunk_length=chunk_length, num_steps=steps,
        batch=context.batch_size, dtype_bytes=dtype_bytes)
    return [s for s in stage_costs(cfg, workload) if s.name.startswith("dit_step_")]


def dit_loop_roofline(model: FlowActionExpert, context: VLMContext, chunk_length: int,
                      device, *, num_steps: int | None = None, dtype_bytes: int = 2,
                      fusion: str = "none") -> float:
    """Seconds the N-step DiT loop needs at the device's roofline: sum over ops of
    max(flops / peak, bytes / bandwidth), no launch overhead (`xr0lab.latency.roofline`).
    `fusion="elementwise"` is the bound of a fusing compiler (`xr0lab.latency.roofline.fuse`)."""
    from xr0lab.latency.roofline import predict_stage

    stages = dit_loop_stages(model, context, chunk_length, num_steps=num_steps,
                             dtype_bytes=dtype_bytes)
    return sum(p.seconds - p.launch_s for p in (predict_stage(s, device, fusion)
                                                for s in stages))


def compare_dit_loop(model: FlowActionExpert, context: VLMContext, state: torch.Tensor,
                     action_mask: torch.Tensor, *, device=None, repeats: int = 20,
                     seed: int = 0) -> dict:
    """Eager `sample` vs the static loop (a CUDA graph on GPU), timed side by side in one run.

    With `device` (an `xr0lab.latency.devices.Device`) the result also holds the loop's roofline
    bound and the measured static time over it. Returns medians in seconds and the ratios.
    """
    import time

    dev = model.device
    noise = torch.randn(action_mask.shape[0], action_mask.shape[1],
                        model.config.action.action_dim, generator=torch.Generator().manual_seed(seed)
                        ).to(dev)
    static = StaticDiTLoop(model, context, state, action_mask)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    def eager() -> torch.Tensor:
        with torch.no_grad():
            return model.sample(context, state.to(dev), action_mask.to(dev), noise=noise,
                                numerics="precise")

    runs = {"eager": eager, "static": lambda: static(noise)}
    for fn in runs.values():  # warm-up, excluded
        fn()
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(repeats):  # interleaved, so drift hits both alike
        for name, fn in runs.items():
            sync()
            start = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - start)
    med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    out = {"device": str(dev), "cuda_graph": static.graph is not None, "repeats": repeats,
           "eager_p50_s": med["eager"], "static_p50_s": med["static"],
           "static_over_eager": med["static"] / med["eager"]}
    if device is not None:
        dtype_bytes = torch.finfo(model.dtype).bits // 8
        roof = dit_loop_roofline(model, context, action_mask.shape[1], device,
                                 dtype_bytes=dtype_bytes)
        out.update(roofline_device=device.name, roofline_s=roof,
                   static_over_roofline=med["static"] / roof if roof else None)
    return out
