"""What one inference processes: the `Workload` (views, image size, prompt, chunk, steps, depth,
dtype) and the `Shapes` it resolves to against a config; `RELEASED` is the released system's.
"""

from __future__ import annotations

from dataclasses import dataclass

from xr0lab.config import XR0Config


@dataclass(frozen=True)
class Workload:
    """What one inference processes. `None` fields take the config's value.

    image_hw: each view's size after resizing (multiples of patch * merge = 32 px; see
      `xr0lab.io.images.smart_resize`).
    text_tokens: prompt tokens that are not image tokens (template, view headers, vision
      start/end markers, instruction).
    vlm_layers: run a VLM truncated to this many layers (the DiT then pairs the last dit_layers
      of those). Because the DiT reads the *last* layers, the prefill must run every VLM layer;
      only truncating the VLM itself shortens it (a different model: needs retraining).
    dit_layers: DiT depth (fewer layers = pair fewer of the VLM's last layers).
    dtype_bytes: 2 for bf16/fp16, 4 for fp32.
    lm_head_tokens: positions whose logits are computed (0: the DiT needs the cache, not logits;
      xr0lab's prefill skips the head).
    copy_context: materialise the paired K/V as a new contiguous buffer at hand-off (needed when
      VLM and DiT sit on different devices or for static CUDA-graph inputs; xr0lab hands the
      cache tensors over without a copy).
    """

    name: str = "custom"
    views: int = 3
    image_hw: tuple[int, int] = (256, 320)
    text_tokens: int = 64
    chunk_length: int | None = None
    num_steps: int | None = None
    vlm_layers: int | None = None
    dit_layers: int | None = None
    batch: int = 1
    dtype_bytes: int = 2
    lm_head_tokens: int = 0
    copy_context: bool = False

    def __post_init__(self) -> None:
        for name in ("views", "batch", "dtype_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"Workload.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("text_tokens", "lm_head_tokens"):
            if getattr(self, name) < 0:
                raise ValueError(f"Workload.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("chunk_length", "num_steps", "vlm_layers", "dit_layers"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"Workload.{name} must be >= 1 or None, got {value}")
        if self.dtype_bytes not in (2, 4):
            raise ValueError(f"Workload.dtype_bytes must be 2 (bf16) or 4 (fp32), "
                             f"got {self.dtype_bytes}")

    def resolve(self, config: XR0Config) -> "Shapes":
        """Concrete sizes for this config; raises ValueError naming what does not fit."""
        v = config.vlm
        px = v.pixels_per_token
        h, w = self.image_hw
        if h % px or w % px or h < px or w < px:
            raise ValueError(f"Workload.image_hw {self.image_hw} must be positive multiples of "
                             f"patch_size * spatial_merge_size = {px} px "
                             "(xr0lab.io.images.smart_resize gives valid sizes)")
        n_vlm = self.vlm_layers or v.num_layers
        n_dit = self.dit_layers or config.dit.num_layers
        if n_vlm > v.num_layers:
            raise ValueError(f"Workload.vlm_layers ({n_vlm}) exceeds the config's "
                             f"vlm.num_layers ({v.num_layers})")
        if n_dit > n_vlm:
            raise ValueError(f"Workload.dit_layers ({n_dit}) exceeds the VLM layers run "
                             f"({n_vlm}): each DiT layer reads one of the last VLM layers")
        grid_h, grid_w = h // v.patch_size, w // v.patch_size
        patches = grid_h * grid_w  # one temporal patch: an image is its frame repeated twice
        tokens = patches // v.spatial_merge_size ** 2
        T = self.chunk_length or config.action.chunk_length
        return Shapes(batch=self.batch, views=self.views, patches_per_view=patches,
                      tokens_per_view=tokens, text_tokens=self.text_tokens,
                      prompt_length=self.views * tokens + self.text_tokens, chunk_length=T,
                      dit_tokens=2 + T, num_steps=self.num_steps or config.flow.num_steps,
                      vlm_layers=n_vlm, dit_layers=n_dit, dtype_bytes=self.dtype_bytes)


@dataclass(frozen=True)
class Shapes:
    """A workload resolved against a config: every size the op counts need."""

    batch: int
    views: int
    patches_per_view: int
    tokens_per_view: int
    text_tokens: int
    prompt_length: int  # L
    chunk_length: int  # T
    dit_tokens: int  # S = 2 + T (sink, state, actions)
    num_steps: int
    vlm_layers: int
    dit_layers: int
    dtype_bytes: int

    @property
    def patches(self) -> int:
        return self.views * self.patches_per_view

    @property
    def visual_tokens(self) -> int:
        return self.views * self.tokens_per_view


# The released configuration: 3 views, 30-action chunk, 5 Euler steps, bf16 (docs/architecture.md §9-10).
# 256x320 is what Qwen's resize (`processor.smart_resize`) makes of a 480x640 camera under the
# 90,000 px cap: 80 tokens a view. (A 90,000 px cap allows at most 87 tokens; the released
# setups' camera sizes are not published.) Text: the released template is ~50 tokens with 3
# views (headers, vision start/end markers, chat tokens, "/no_cot", "<cot></cot>") plus a
# ~12-token instruction; so L = 3 * 80 + 64 = 304, the spec's "~300 prompt tokens".
RELEASED = Workload(name="released", views=3, image_hw=(256, 320), text_tokens=64,
                    chunk_length=30, num_steps=5, dtype_bytes=2)


def whole_tokens(config: XR0Config, height: int, width: int) -> tuple[int, int]:
    """(height, width) snapped down to whole visual tokens (multiples of
    `vlm.pixels_per_token`), at least one token each way: a valid `Workload.image_hw`."""
    px = config.vlm.pixels_per_token
    return max(px, height // px * px), max(px, width // px * px)
