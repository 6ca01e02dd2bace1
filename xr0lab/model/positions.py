"""DiT positions and rotary tables (docs/architecture.md §5).

Axes: B batch, L prompt length, S = 2 + T DiT tokens, C = 3 M-RoPE components (t, h, w),
h head dim.

DiT token j (0-based over [sink, state, a_0 ...]) gets position P_c + 1 + j in component c, where
P_c is the sample's largest real prompt position in that component. Text after the last image has
equal t/h/w ids, so in practice this is 1-D RoPE continuing after the prompt. In xr0-async mode
every non-prefix action token gets `rope_offset` (+10) added: the flow time is global (adaLN), so
this gap is what tells a clean prefix token from a noisy one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from xr0lab.model.masks import NUM_SPECIAL_TOKENS


def dit_positions(prompt_positions: torch.Tensor, prompt_mask: torch.Tensor, chunk_length: int,
                  *, prefix_length: int = 0, rope_offset: int = 0) -> torch.Tensor:
    """(3, B, 2 + T) long positions of the DiT tokens.

    >>> pos = torch.arange(5).expand(3, 1, 5)
    >>> dit_positions(pos, torch.ones(1, 5), 3, prefix_length=1, rope_offset=10)[0].tolist()
    [[5, 6, 7, 18, 19]]
    """
    if prompt_positions.dim() != 3 or prompt_positions.shape[0] != 3:
        raise ValueError("prompt_positions must be (3, B, L), got "
                         f"{tuple(prompt_positions.shape)}")
    if prompt_mask.shape != prompt_positions.shape[1:]:
        raise ValueError(f"prompt_mask {tuple(prompt_mask.shape)} must match prompt_positions' "
                         f"(B, L) = {tuple(prompt_positions.shape[1:])}")
    if not 0 <= prefix_length <= chunk_length:
        raise ValueError(f"prefix_length must be in [0, {chunk_length}], got {prefix_length}")
    real = prompt_mask.bool()[None]
    # Padding positions are ignored: P is the max over real prompt tokens only.
    floor = torch.iinfo(torch.long).min
    P = prompt_positions.long().masked_fill(~real, floor).amax(dim=-1)  # (3, B)
    S = NUM_SPECIAL_TOKENS + chunk_length
    j = torch.arange(S, device=prompt_positions.device)
    offset = torch.zeros(S, dtype=torch.long, device=prompt_positions.device)
    offset[NUM_SPECIAL_TOKENS + prefix_length:] = rope_offset
    return P[..., None] + 1 + j + offset  # (3, B, S)


def rope_inv_freq(head_dim: int, theta: float, dtype: torch.dtype = torch.float32,
                  device: torch.device | str | None = None) -> torch.Tensor:
    """(h/2,) inverse frequencies theta^(-2i/h), computed in float32 as the library's default
    rotary init does, then stored in `dtype` (bf16 is what the server's `.to(torch.bfloat16)`
    leaves in the non-persistent buffer)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32,
                                             device=device) / head_dim))
    return inv_freq.to(dtype)


def rope_phase_error(head_dim: int, theta: float, position: int,
                     dtype: torch.dtype = torch.bfloat16) -> float:
    """Largest rotation-angle error (rad) at `position` when inv_freq is stored in `dtype`.

    >>> round(rope_phase_error(128, 5_000_000.0, 300), 3)  # the xr0 text tower, position 300
    0.269
    """
    exact = rope_inv_freq(head_dim, theta).double()
    rounded = rope_inv_freq(head_dim, theta, dtype).double()
    return float((position * (rounded - exact)).abs().max())


@contextlib.contextmanager
def rotary_buffers_in(module: nn.Module, dtype: torch.dtype) -> Iterator[None]:
    """Inside, every non-persistent floating buffer of `module` (Qwen3-VL's rotary `inv_freq`
    and `original_inv_freq`, text and vision) is replaced by its cast to `dtype`; outside, the
    originals are back.

    Why: the official server calls `.to(torch.bfloat16)` after loading, which rounds these
    buffers; `load_pretrained` and a fresh `XR0Model` keep them float32. This reproduces the
    server's tables for one call without changing the model for the precise path. Buffers
    already in `dtype` (a model cast with `.to`) are left as they are. Not thread-safe: another
    thread using the same model meanwhile sees the cast buffers.
    """
    swapped = []
    for sub in module.modules():
        for name in sub._non_persistent_buffers_set:
            buf = sub._buffers.get(name)
            if buf is not None and buf.is_floating_point() and buf.dtype != dtype:
                swapped.append((sub, name, buf))
                sub._buffers[name] = buf.to(dtype)
    try:
        yield
    finally:
        for sub, name, buf in reversed(swapped):
            sub._buffers[name] = buf


def rope_cos_sin(positions: torch.Tensor, head_dim: int, theta: float,
                 mrope_section: tuple[int, ...], dtype: torch.dtype = torch.float32, *,
                 inv_freq_dtype: torch.dtype = torch.float32
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin of shape (B, S, h) for interleaved M-RoPE, as Qwen3-VL's text rotary computes them.

    Frequency slot f (of h/2) takes its position from component 0 (t), except slots f = 1, 4, 7,
    ... (f % 3 == 1, f < 3 * section[1]) from h and f % 3 == 2 (f < 3 * section[2]) from w. The
    model itself uses the VLM's own rotary module; this pure version serves models without a VLM
    (the benchmark) and is tested against the library's. `inv_freq_dtype` rounds the inverse
    frequencies first (bf16 for the released numerics; the angles are still formed in float32).
    """
    if positions.dim() != 3 or positions.shape[0] != 3:
        raise ValueError(f"positions must be (3, B, S), got {tuple(positions.shape)}")
    half = head_dim // 2
    inv_freq = rope_inv_freq(head_dim, theta, inv_freq_dtype, positions.device).float()
    freqs = positions.float()[..., None] * inv_freq  # (3, B, S, h/2)
    out = freqs[0].clone()
    for component in (1, 2):
        idx = torch.arange(component, 3 * mrope_section[component], 3, device=positions.device)
        idx = idx[idx < half]
        out[..., idx] = freqs[component][..., idx]
    emb = torch.cat([out, out], dim=-1)  # (B, S, h)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: (B, H, S, h); cos/sin: (B, S, h). The rotate-half convention Qwen uses."""
    cos, sin = cos[:, None], sin[:, None]
    return x * cos + rotate_half(x) * sin
