"""The XR-0 model: Qwen3-VL prefill once, then the flow-matching DiT against its cache.

    context = model.prefill(input_ids, attention_mask, pixel_values, image_grid_thw)   # VLM once
    actions = model.sample(context, state, action_mask, noise=...)                     # N DiT steps

`predict_actions` does both from processor-format inputs; `compute_loss` is the post-training
objective. Parameter names match the released checkpoint (`vlm.*`, `dit.*`, projectors, sink).
"""

from __future__ import annotations

import torch

from xr0lab.model.expert import FlowActionExpert
from xr0lab.model.loss import LossOutput
from xr0lab.config import Mode, ModeConfig, XR0Config
from xr0lab.flow import FlowTrace, Integrator
from xr0lab.inspect.hook_points import HookPoint, name_hook_points
from xr0lab.model.checks import (XR0InputError, check_action_inputs, check_actions, check_prefix,
                           check_prompt)
from xr0lab.model.vlm import VLMContext, build_vlm, prefill, resolve_attn_implementation


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
        """Load a checkpoint directory in the released format; see `xr0lab.io.checkpoint.load_pretrained`."""
        from xr0lab.io.checkpoint import load_pretrained  # lazy: checkpoint imports this module

        return load_pretrained(path, **kwargs)

    def save_pretrained(self, path, **kwargs):
        """Write the released format; see `xr0lab.io.checkpoint.save_pretrained`."""
        from xr0lab.io.checkpoint import save_pretrained

        return save_pretrained(self, path, **kwargs)

    def rotary(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The VLM text tower's own rotary module, so DiT RoPE is the LLM's RoPE continued."""
        probe = torch.empty(0, dtype=self.dtype, device=positions.device)
        return self.vlm.model.language_model.rotary_emb(probe, positions)

    def prefill(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                pixel_values: torch.Tensor | None = None,
                image_grid_thw: torch.Tensor | None = None, *,
                keep_all_layers: bool = False) -> VLMContext:
        """One VLM forward -> immutable context with the paired layers' K/V (every VLM layer's
        with keep_all_layers=True, for remapping; `sample` then needs `remap_context` first)."""
        check_prompt(self.config, input_ids, attention_mask, pixel_values, image_grid_thw)
        return self._prefill(input_ids, attention_mask, pixel_values, image_grid_thw,
                             keep_all_layers=keep_all_layers)

    def _prefill(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 pixel_values: torch.Tensor | None, image_grid_thw: torch.Tensor | None, *,
                 keep_all_layers: bool = False) -> VLMContext:
        """`prefill` for inputs the caller has already run through `check_prompt`."""
        dev = self.device
        if pixel_values is not None:
            pixel_values = pixel_values.to(dev, self.vlm.model.visual.dtype)
        layers = (tuple(range(self.config.vlm.num_layers)) if keep_all_layers
                  else self.config.vlm_layer_for_dit_layer)
        context = prefill(self.vlm, layers,
                          input_ids=input_ids.to(dev), attention_mask=attention_mask.to(dev),
                          pixel_values=pixel_values,
                          image_grid_thw=None if image_grid_thw is None else image_grid_thw.to(dev))
        return context.replace(positions=self.hook_prompt_positions(context.positions),
                               prompt_mask=self.hook_prompt_mask(context.prompt_mask))

    def resolve_mode(self, mode: Mode | ModeConfig | None) -> ModeConfig:
        return self.config.mode if mode is None else ModeConfig.coerce(mode)

    def make_noise(self, shape: tuple[int, ...], seed: int | None) -> torch.Tensor:
        """Release seeding: seed the global RNG, draw, restore it — the caller's RNG is untouched."""
        if seed is None:
            return torch.randn(shape, device=self.device)
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            return torch.randn(shape, device=self.device)

    @torch.no_grad()
    def predict_actions(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                        pixel_values: torch.Tensor | None, image_grid_thw: torch.Tensor | None,
                        state: torch.Tensor, action_mask: torch.Tensor, *,
                        seed: int | None = None, noise: torch.Tensor | None = None,
                        num_steps: int | None = None, prefix: torch.Tensor | None = None,
                        prefix_length: int | None = None, mode: Mode | ModeConfig | None = None,
                        method: Integrator = "euler", return_trace: bool = False,
                        mm_token_type_ids: torch.Tensor | None = None
                        ) -> torch.Tensor | tuple[torch.Tensor, FlowTrace]:
        """Normalised actions (B, T, A), T = action_mask.shape[1]. The VLM runs exactly once.

        prefix: clean normalised actions (B, >= p, A) to commit (xr0-async only).
        seed: reproducible noise that leaves the caller's RNG state alone. noise: explicit
        (B, T, A) noise instead (common random numbers across arms). mm_token_type_ids is accepted
        for processor compatibility and recomputed from input_ids.
        """
        mode_cfg = self.resolve_mode(mode)
        B = check_prompt(self.config, input_ids, attention_mask, pixel_values, image_grid_thw)
        T = check_action_inputs(self.config, B, state, action_mask)
        p = check_prefix(self.config, B, T, prefix, prefix_length, mode_cfg.supports_prefix)
        steps = self.config.flow.num_steps if num_steps is None else num_steps
        if steps < 1:
            raise XR0InputError(f"num_steps must be >= 1, got {steps}")
        shape = (B, T, self.config.action.action_dim)
        if noise is None:
            noise = self.make_noise(shape, seed)
        elif tuple(noise.shape) != shape:
            raise XR0InputError(f"noise must have shape {shape}, got {tuple(noise.shape)}")
        context = self._prefill(input_ids, attention_mask, pixel_values, image_grid_thw)
        dev = self.device
        out = self.sample(context, state.to(dev), action_mask.to(dev), noise=noise.to(dev).float(),
                          num_steps=steps, prefix=None if prefix is None else prefix.to(dev),
                          prefix_length=p, mode=mode_cfg, method=method, record=return_trace)
        if return_trace:
            return out[0].float(), out[1]
        return out.float()

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
        context = self._prefill(input_ids, attention_mask, pixel_values, image_grid_thw)
        dev = self.device
        return self.flow_loss(context, actions.to(dev).float(), action_mask.to(dev),
                              state.to(dev), generator=generator, prefix_length=prefix_length,
                              **overrides)
