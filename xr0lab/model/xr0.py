"""The XR-0 model: Qwen3-VL prefill once, then the flow-matching DiT against its cache.

    context = model.prefill(input_ids, attention_mask, pixel_values, image_grid_thw)   # VLM once
    actions = model.sample(context, state, action_mask, noise=...)                     # N DiT steps

`predict_actions` does both from processor-format inputs; `compute_loss` is the post-training
objective. Parameter names match the released checkpoint (`vlm.*`, `dit.*`, projectors, sink).
"""

from __future__ import annotations

import contextlib

import torch

from xr0lab.model.expert import FlowActionExpert
from xr0lab.model.loss import LossOutput
from xr0lab.config import Mode, ModeConfig, Numerics, XR0Config
from xr0lab.flow import FlowTrace, Integrator
from xr0lab.inspect.hook_points import HookPoint, name_hook_points
from xr0lab.model.checks import (XR0InputError, check_action_inputs, check_actions, check_method,
                                 check_noise, check_num_steps, check_prefix, check_prompt,
                                 check_seed, is_int)
from xr0lab.model.positions import rotary_buffers_in
from xr0lab.model.vlm import VLMContext, build_vlm, prefill, resolve_attn_implementation


class XR0CompileError(TypeError):
    """`XR0Model` was called, or handed to `torch.compile`, as if it had a forward pass.

    Not an AttributeError on purpose: `nn.Module.__getattr__` would swallow it and report a
    missing attribute instead of this message. The price is that `hasattr(model, "forward")`
    raises rather than answering."""


NO_FORWARD_MESSAGE = (
    "XR0Model has no forward pass to call or compile: one inference is a VLM prefill and a "
    "Python loop of DiT steps (model.predict_actions, or the released model.generate_actions), "
    "and torch.compile(model) would compile neither. Compile the DiT step, which "
    "predict_actions and generate_actions then use:\n"
    "    model.denoise_step = torch.compile(model.denoise_step, dynamic=False)\n"
    "For mode='reduce-overhead' (CUDA graphs) replay the whole DiT loop instead: "
    "xr0lab.latency.cuda_graph.StaticDiTLoop(model, context, state, action_mask, "
    "cuda_graph=True), optionally with step=<the compiled step>.")


class XR0Model(FlowActionExpert):
    """XR-0: a Qwen3-VL backbone (`self.vlm`) in front of the flow-matching action expert.

    One inference is one VLM prefill and `num_steps` DiT evaluations against its cache:

        actions = model.predict_actions(**processor_inputs, seed=0)   # (B, T, 32), normalised
        context = model.prefill(input_ids, attention_mask, pixel_values, image_grid_thw)
        actions = model.sample(context, state, action_mask, noise=noise, prefix=..., ...)

    `config.mode` picks the released inference behaviour ("release": causal action mask, no
    RoPE gap, no prefix) or the asynchronous post-training one ("xr0-async": Λ band, +10 gap,
    clean prefixes). Parameter names are the released checkpoint's, so `from_pretrained` loads a
    released directory strictly. `vlm=` shares an existing backbone (e.g. the same weights in
    another mode). Inspection goes through the hooks of `xr0lab.inspect` (`run_with_cache`,
    `run_with_hooks`), which are off and cheap unless used.
    """

    def __init__(self, config: XR0Config, *, vlm=None) -> None:
        super().__init__(config)
        if vlm is None:
            vlm = build_vlm(config.vlm, resolve_attn_implementation(config.attn_implementation))
        self.vlm = vlm
        self.hook_prompt_positions = HookPoint()  # (3, B, L) M-RoPE ids of the prompt
        self.hook_prompt_mask = HookPoint()  # (B, L) bool, True for real prompt tokens
        self.hook_points = name_hook_points(self)

    @classmethod
    def from_pretrained(cls, path, **kwargs) -> "XR0Model":
        """Load a checkpoint directory in the released format; see
        `xr0lab.io.checkpoint.load_pretrained`. The released stack's keywords work too:
        torch_dtype (= dtype), device_map (one device), attn_implementation, and
        trust_remote_code, accepted and ignored (no code from a checkpoint is ever run)."""
        # lazy: checkpoint imports this module
        from xr0lab.io.checkpoint import load_pretrained, released_loading_kwargs

        return load_pretrained(path, **released_loading_kwargs(kwargs))

    @property
    def forward(self):
        """There is none: `predict_actions` (or the released `generate_actions`) is one
        inference. A property, so that `torch.compile(model)`, which reads `model.forward`
        while wrapping it, fails at once instead of compiling nothing that inference runs."""
        raise XR0CompileError(NO_FORWARD_MESSAGE)

    def compile(self, *args, **kwargs):
        """Refused for the reason `forward` gives (`nn.Module.compile` compiles `__call__`)."""
        raise XR0CompileError(NO_FORWARD_MESSAGE)

    def generate_actions(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                         pixel_values: torch.Tensor | None = None,
                         image_grid_thw: torch.Tensor | None = None, *,
                         proprio_state: torch.Tensor | None = None,
                         action_mask: torch.Tensor | None = None,
                         num_diffusion_steps: int | None = None, seed: int | None = None,
                         **kwargs) -> torch.Tensor:
        """The released model's call, mapped onto `predict_actions`:
        `generate_actions(**inputs, proprio_state=s, action_mask=m, num_diffusion_steps=5,
        seed=42)` is `predict_actions(**inputs, state=s, action_mask=m, num_steps=5, seed=42)`.
        Other keywords are predict_actions' own (`state=` and `num_steps=` included)."""
        for theirs, ours, value in (("proprio_state", "state", proprio_state),
                                    ("num_diffusion_steps", "num_steps", num_diffusion_steps)):
            if value is None:
                continue
            if kwargs.get(ours) is not None:
                raise XR0InputError(f"generate_actions got both {theirs}= (the released name) and "
                                    f"{ours}= (xr0lab's name); pass one")
            kwargs[ours] = value
        if kwargs.get("state") is None:
            raise XR0InputError("generate_actions needs proprio_state= (xr0lab: state=), the raw "
                                "robot state (B, 1, 32) from the processor or pad_state")
        if action_mask is None:
            raise XR0InputError("generate_actions needs action_mask= (B, T, 32), e.g. "
                                "processor.get_action_mask(robot_type, batch_size=B); T sets the "
                                "horizon")
        return self.predict_actions(input_ids, attention_mask, pixel_values, image_grid_thw,
                                    action_mask=action_mask, seed=seed, **kwargs)

    def save_pretrained(self, path, **kwargs):
        """Write the released format; see `xr0lab.io.checkpoint.save_pretrained`."""
        from xr0lab.io.checkpoint import save_pretrained

        return save_pretrained(self, path, **kwargs)

    def rotary(self, positions: torch.Tensor, numerics: Numerics = "precise"
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """The VLM text tower's own rotary module, so DiT RoPE is the LLM's RoPE continued
        ("release": with its inv_freq in the model dtype, as the server leaves it)."""
        probe = torch.empty(0, dtype=self.dtype, device=positions.device)
        rotary = self.vlm.model.language_model.rotary_emb
        with self._rope_numerics(rotary, numerics):
            return rotary(probe, positions)

    def _rope_numerics(self, module: torch.nn.Module, numerics: Numerics):
        """Release numerics: `module`'s rotary buffers in the model dtype for the block."""
        if numerics == "release":
            return rotary_buffers_in(module, self.dtype)
        return contextlib.nullcontext()

    def prefill(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                pixel_values: torch.Tensor | None = None,
                image_grid_thw: torch.Tensor | None = None, *,
                keep_all_layers: bool = False, numerics: Numerics | None = None) -> VLMContext:
        """One VLM forward -> immutable context with the paired layers' K/V (every VLM layer's
        with keep_all_layers=True, for remapping; `sample` then needs `remap_context` first).
        numerics "release" (default `config.flow.numerics`) runs the text and vision RoPE from
        inv_freq rounded to the model dtype, as the official server's `.to(torch.bfloat16)`."""
        numerics = self.resolve_numerics(numerics)
        check_prompt(self.config, input_ids, attention_mask, pixel_values, image_grid_thw)
        return self._prefill(input_ids, attention_mask, pixel_values, image_grid_thw,
                             keep_all_layers=keep_all_layers, numerics=numerics)

    def _prefill(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 pixel_values: torch.Tensor | None, image_grid_thw: torch.Tensor | None, *,
                 keep_all_layers: bool = False, numerics: Numerics = "precise") -> VLMContext:
        """`prefill` for inputs the caller has already run through `check_prompt`."""
        dev = self.device
        if pixel_values is not None:
            pixel_values = pixel_values.to(dev, self.vlm.model.visual.dtype)
        layers = (tuple(range(self.config.vlm.num_layers)) if keep_all_layers
                  else self.config.vlm_layer_for_dit_layer)
        with self._rope_numerics(self.vlm, numerics):
            context = prefill(self.vlm, layers,
                              input_ids=input_ids.to(dev), attention_mask=attention_mask.to(dev),
                              pixel_values=pixel_values,
                              image_grid_thw=None if image_grid_thw is None
                              else image_grid_thw.to(dev))
        return context.replace(positions=self.hook_prompt_positions(context.positions),
                               prompt_mask=self.hook_prompt_mask(context.prompt_mask))

    def resolve_mode(self, mode: Mode | ModeConfig | None) -> ModeConfig:
        return self.config.mode if mode is None else ModeConfig.coerce(mode)

    def make_noise(self, shape: tuple[int, ...], seed: int | None,
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Release seeding: seed the global RNG, draw, restore it — the caller's RNG is untouched.
        The released code draws in the model dtype, and a bf16 draw is not always the fp32 draw
        rounded (torch's kernels differ), so `dtype` is the dtype of the draw itself."""
        check_seed(seed)
        if seed is None:
            return torch.randn(shape, device=self.device, dtype=dtype)
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            return torch.randn(shape, device=self.device, dtype=dtype)

    @torch.no_grad()
    def predict_actions(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                        pixel_values: torch.Tensor | None, image_grid_thw: torch.Tensor | None,
                        state: torch.Tensor, action_mask: torch.Tensor, *,
                        seed: int | None = None, noise: torch.Tensor | None = None,
                        num_steps: int | None = None, prefix: torch.Tensor | None = None,
                        prefix_length: int | None = None, mode: Mode | ModeConfig | None = None,
                        method: Integrator = "euler", return_trace: bool = False,
                        mm_token_type_ids: torch.Tensor | None = None,
                        numerics: Numerics | None = None
                        ) -> torch.Tensor | tuple[torch.Tensor, FlowTrace]:
        """Normalised actions (B, T, A), T = action_mask.shape[1]. The VLM runs exactly once.

        prefix: clean normalised actions (B, >= p, A) to commit (xr0-async only).
        seed: reproducible noise that leaves the caller's RNG state alone. noise: explicit
        (B, T, A) noise instead (common random numbers across arms). mm_token_type_ids is accepted
        for processor compatibility and recomputed from input_ids.
        numerics (default `config.flow.numerics`): "precise" draws the noise and integrates in
        float32 and returns float32; "release" reproduces the released inference in the model
        dtype: noise drawn in it, x and t kept in it, RoPE inv_freq rounded to it, actions
        returned in it (bf16 on a GPU). For a float32 model the two are the same.
        """
        numerics = self.resolve_numerics(numerics)
        flow_dtype = self.dtype if numerics == "release" else torch.float32
        mode_cfg = self.resolve_mode(mode)
        B = check_prompt(self.config, input_ids, attention_mask, pixel_values, image_grid_thw)
        T = check_action_inputs(self.config, B, state, action_mask)
        p = check_prefix(self.config, B, T, prefix, prefix_length, mode_cfg.supports_prefix)
        # Everything is checked before the prefill: a bad argument must not cost a VLM forward.
        steps = check_num_steps(self.config, num_steps)
        check_method(method)
        check_seed(seed)
        shape = (B, T, self.config.action.action_dim)
        check_noise(shape, noise, seed)
        if noise is None:
            noise = self.make_noise(shape, seed, flow_dtype)
        context = self._prefill(input_ids, attention_mask, pixel_values, image_grid_thw,
                                numerics=numerics)
        dev = self.device
        out = self._sample(context, state.to(dev), action_mask.to(dev),
                           noise=noise.to(dev, flow_dtype), num_steps=steps,
                           prefix=None if prefix is None else prefix.to(dev), prefix_length=p,
                           mode=mode_cfg, method=method, record=return_trace, numerics=numerics)
        if return_trace:
            return out[0].to(flow_dtype), out[1]
        return out.to(flow_dtype)

    def compute_loss(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                     pixel_values: torch.Tensor | None, image_grid_thw: torch.Tensor | None,
                     state: torch.Tensor, action_mask: torch.Tensor, actions: torch.Tensor, *,
                     generator: torch.Generator | None = None, prefix_length: int | None = None,
                     mm_token_type_ids: torch.Tensor | None = None, **overrides) -> LossOutput:
        """The post-training objective (docs/architecture.md §7); one VLM forward feeds
        `train.training_repeat` DiT samples."""
        B = check_prompt(self.config, input_ids, attention_mask, pixel_values, image_grid_thw)
        T = check_action_inputs(self.config, B, state, action_mask)
        check_actions(self.config, B, T, actions)
        if prefix_length is not None:  # checked here too, so a bad value costs no prefill
            if not is_int(prefix_length):
                raise XR0InputError(f"prefix_length must be an int (or None for the prefix "
                                    f"schedule), got {prefix_length!r} "
                                    f"({type(prefix_length).__name__})")
            if prefix_length and not self.config.mode.supports_prefix:
                raise XR0InputError(f"prefix_length={prefix_length} needs mode 'xr0-async'; "
                                    f"config mode is {self.config.mode.mode!r}")
            if not 0 <= prefix_length <= T:
                raise XR0InputError(f"prefix_length must be in [0, {T}] (the action horizon), "
                                    f"got {prefix_length}")
        context = self._prefill(input_ids, attention_mask, pixel_values, image_grid_thw)
        dev = self.device
        return self.flow_loss(context, actions.to(dev).float(), action_mask.to(dev),
                              state.to(dev), generator=generator, prefix_length=prefix_length,
                              **overrides)
