"""The Qwen3-VL wrapper: build the library's model from a config and prefill it into an immutable
`VLMContext` (docs/architecture.md §2). Qwen3-VL itself is `transformers`' implementation, not ours.

Axes: B batch, L prompt length, K kv heads, h head dim, N patches.
"""

from __future__ import annotations

import dataclasses
import inspect
from functools import lru_cache
from dataclasses import dataclass

import torch

from xr0lab.config import IMAGE_PAD_ID, VIDEO_PAD_ID, VLMConfig


@dataclass(frozen=True)
class VLMContext:
    """What the DiT consumes from one prefill. A value: ablations build a new one, never edit.

    keys/values: one (B, K, L, h) tensor per DiT layer, already paired (entry i feeds DiT layer i);
    keys are post k-norm and post M-RoPE, values raw, exactly as the VLM cached them.
    prompt_mask: (B, L) bool, True for real prompt tokens (padding is on the right).
    positions: (3, B, L) the prompt's M-RoPE position ids (t, h, w).
    vlm_layers: which VLM layer each entry came from.
    image_token_mask: (B, L) bool, True at image tokens (for attention-mass tables), if known.
    """

    keys: tuple[torch.Tensor, ...]
    values: tuple[torch.Tensor, ...]
    prompt_mask: torch.Tensor
    positions: torch.Tensor
    vlm_layers: tuple[int, ...]
    image_token_mask: torch.Tensor | None = None

    @property
    def batch_size(self) -> int:
        return int(self.prompt_mask.shape[0])

    @property
    def prompt_length(self) -> int:
        return int(self.prompt_mask.shape[1])

    def repeat_interleave(self, repeats: int) -> "VLMContext":
        """Each sample repeated `repeats` times along the batch (training_repeat)."""
        if repeats == 1:
            return self
        rep = lambda x: x.repeat_interleave(repeats, dim=0)  # noqa: E731
        return VLMContext(
            keys=tuple(rep(k) for k in self.keys), values=tuple(rep(v) for v in self.values),
            prompt_mask=rep(self.prompt_mask), positions=self.positions.repeat_interleave(repeats, 1),
            vlm_layers=self.vlm_layers,
            image_token_mask=None if self.image_token_mask is None else rep(self.image_token_mask))

    def replace(self, **changes) -> "VLMContext":
        return dataclasses.replace(self, **changes)


def build_vlm(config: VLMConfig, attn_implementation: str = "sdpa"):
    """A randomly initialised `Qwen3VLForConditionalGeneration` of this shape."""
    from transformers import Qwen3VLForConditionalGeneration

    return Qwen3VLForConditionalGeneration(config.to_hf(attn_implementation))


def resolve_attn_implementation(requested: str | None) -> str:
    """flash_attention_2 only when importable; otherwise SDPA (the CPU and default path)."""
    if requested in (None, "auto"):
        from transformers.utils import is_flash_attn_2_available

        return "flash_attention_2" if is_flash_attn_2_available() else "sdpa"
    if requested == "flash_attention_2":
        from transformers.utils import is_flash_attn_2_available

        if not is_flash_attn_2_available():
            raise ImportError("attn_implementation='flash_attention_2' requested but flash-attn is "
                              "not installed; install the 'flash' extra or use 'sdpa'")
    return requested


def mm_token_type_ids(input_ids: torch.Tensor) -> torch.Tensor:
    """0 text, 1 image, 2 video — what transformers 5.x needs beside image_grid_thw."""
    types = torch.zeros_like(input_ids, dtype=torch.int)
    types[input_ids == IMAGE_PAD_ID] = 1
    types[input_ids == VIDEO_PAD_ID] = 2
    return types


@lru_cache(maxsize=None)
def _accepts(fn, name: str) -> bool:
    """Whether a library function takes `name` (4.57 vs 5.x); cached per function object."""
    return name in inspect.signature(fn).parameters


def prompt_positions(vlm, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                     image_grid_thw: torch.Tensor | None,
                     token_types: torch.Tensor | None = None) -> torch.Tensor:
    """(3, B, L) M-RoPE ids from the library's get_rope_index (works on 4.57 and 5.x)."""
    kwargs = dict(image_grid_thw=image_grid_thw, attention_mask=attention_mask)
    if _accepts(type(vlm.model).get_rope_index, "mm_token_type_ids"):
        kwargs["mm_token_type_ids"] = (mm_token_type_ids(input_ids) if token_types is None
                                       else token_types)
    positions, _ = vlm.model.get_rope_index(input_ids, **kwargs)
    return positions


def prefill(vlm, paired_layers: tuple[int, ...], *, input_ids: torch.Tensor,
            attention_mask: torch.Tensor, pixel_values: torch.Tensor | None,
            image_grid_thw: torch.Tensor | None) -> VLMContext:
    """Run the VLM once with use_cache=True and keep the paired layers' K/V.

    Positions are computed here and passed in, so the library's mutable `rope_deltas` state is not
    relied on. The language-model head is skipped: the DiT needs the cache, not logits.
    """
    token_types = mm_token_type_ids(input_ids)  # computed once for both library calls
    positions = prompt_positions(vlm, input_ids, attention_mask, image_grid_thw, token_types)
    kwargs = dict(input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values,
                  image_grid_thw=image_grid_thw, position_ids=positions, use_cache=True)
    if _accepts(type(vlm.model).forward, "mm_token_type_ids"):
        kwargs["mm_token_type_ids"] = token_types
    out = vlm.model(**kwargs)
    # 5.x names the output field `cache` and warns on every read of the old name; 4.57 has
    # only `past_key_values`.
    cache = getattr(out, "cache", None)
    if cache is None:
        cache = out.past_key_values
    keys = tuple(cache.layers[j].keys for j in paired_layers)
    values = tuple(cache.layers[j].values for j in paired_layers)
    return VLMContext(keys=keys, values=values, prompt_mask=attention_mask.bool(),
                      positions=positions, vlm_layers=tuple(paired_layers),
                      image_token_mask=input_ids == IMAGE_PAD_ID)
