"""The DiT action expert (docs/architecture.md §3): layers, projectors, timestep path and sink.

Axes: B batch, L prompt length, T chunk length, S = 2 + T DiT tokens, D DiT width, H query heads,
K kv heads, h head dim, A action/state dims (32).

Parameter names follow the released checkpoint exactly (docs/architecture.md §3.3), so a released state
dict loads with strict=True.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from xr0lab.config import DiTConfig
from xr0lab.inspect.hook_points import HookPoint
from xr0lab.model.positions import apply_rope


class RMSNorm(nn.Module):
    """RMSNorm computed in fp32 and cast back (as Qwen's), weight initialised to ones."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


class MLPProjector(nn.Module):
    """Linear(in -> out), GELU(tanh), Linear(out -> out); a single Linear when n_layers = 1."""

    def __init__(self, in_dim: int, out_dim: int, n_layers: int = 2, bias: bool = False) -> None:
        super().__init__()
        mods: list[nn.Module] = [nn.Linear(in_dim, out_dim, bias=bias)]
        for _ in range(n_layers - 1):
            mods += [nn.GELU(approximate="tanh"), nn.Linear(out_dim, out_dim, bias=bias)]
        self.layers = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal embedding of 1000 * t, [cos, sin], in fp32: (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32,
                                                           device=t.device) / half)
    args = (1000.0 * t.float())[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class TimestepEmbedder(nn.Module):
    def __init__(self, dim: int, freq_dim: int = 256, max_period: float = 10_000.0) -> None:
        super().__init__()
        self.freq_dim, self.max_period = freq_dim, max_period
        self.mlp = nn.Sequential(nn.Linear(freq_dim, dim, bias=False), nn.SiLU(),
                                 nn.Linear(dim, dim, bias=False))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        emb = timestep_embedding(t, self.freq_dim, self.max_period)
        return self.mlp(emb.to(self.mlp[0].weight.dtype))


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """(B, K, L, h) -> (B, K * n_rep, L, h), each kv head repeated for its query group."""
    if n_rep == 1:
        return x
    B, K, L, h = x.shape
    return x[:, :, None].expand(B, K, n_rep, L, h).reshape(B, K * n_rep, L, h)


class DiTAttention(nn.Module):
    """Joint attention over [paired VLM layer's K/V ; the DiT's own K/V]."""

    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        D, self.H, self.h = config.hidden_size, config.num_heads, config.head_dim
        self.n_rep = self.H // config.num_kv_heads
        self.qkv_proj = nn.Linear(D, 3 * D, bias=True)
        self.o_proj = nn.Linear(D, D, bias=False)
        self.q_norm = RMSNorm(self.h, config.rms_norm_eps)
        self.k_norm = RMSNorm(self.h, config.rms_norm_eps)
        self.hook_q = HookPoint()  # (B, H, S, h) after norm and RoPE
        self.hook_k = HookPoint()  # (B, H, S, h) after norm and RoPE (DiT keys only)
        self.hook_v = HookPoint()  # (B, H, S, h)
        self.hook_vlm_k = HookPoint()  # (B, K, L, h) the paired VLM layer's cached keys
        self.hook_vlm_v = HookPoint()  # (B, K, L, h) the paired VLM layer's cached values
        self.hook_scores = HookPoint()  # (B, H, S, L + S) after masking (-inf), before softmax
        self.hook_pattern = HookPoint()  # (B, H, S, L + S) softmax of the scores
        self.hook_z = HookPoint()  # (B, S, H, h) attention-weighted values, before o_proj

    @property
    def explicit(self) -> bool:
        """Materialise scores/pattern only when someone is looking at them."""
        return self.hook_scores.active or self.hook_pattern.active

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                vlm_k: torch.Tensor, vlm_v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        B, S, D = x.shape
        qkv = self.qkv_proj(x).view(B, S, 3, self.H, self.h)
        q, k, v = qkv.unbind(dim=2)  # (B, S, H, h) each
        q = self.q_norm(q).transpose(1, 2)  # (B, H, S, h)
        k = self.k_norm(k).transpose(1, 2)
        v = v.transpose(1, 2)
        q = self.hook_q(apply_rope(q, cos, sin))
        k = self.hook_k(apply_rope(k, cos, sin))
        v = self.hook_v(v)
        vlm_k = self.hook_vlm_k(vlm_k)
        vlm_v = self.hook_vlm_v(vlm_v)
        keys = torch.cat([repeat_kv(vlm_k.to(k.dtype), self.n_rep), k], dim=2)  # (B, H, L+S, h)
        values = torch.cat([repeat_kv(vlm_v.to(v.dtype), self.n_rep), v], dim=2)
        attn_mask = mask[:, None]  # (B, 1, S, L+S), True = may attend
        if self.explicit:
            scores = (q @ keys.transpose(-1, -2)) / math.sqrt(self.h)
            scores = self.hook_scores(scores.masked_fill(~attn_mask, float("-inf")))
            pattern = self.hook_pattern(torch.softmax(scores.float(), dim=-1).to(q.dtype))
            z = pattern @ values
        else:
            z = F.scaled_dot_product_attention(q, keys, values, attn_mask=attn_mask)
        z = self.hook_z(z.transpose(1, 2))  # (B, S, H, h)
        return self.o_proj(z.reshape(B, S, D))


class DiTMLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x)), no biases."""

    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        D, I = config.hidden_size, config.intermediate_size
        self.gate_proj = nn.Linear(D, I, bias=False)
        self.up_proj = nn.Linear(D, I, bias=False)
        self.down_proj = nn.Linear(I, D, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


MODULATION_NAMES = ("shift_attn", "scale_attn", "gate_attn", "shift_mlp", "scale_mlp", "gate_mlp")


class DiTLayer(nn.Module):
    """One decoder layer (docs/architecture.md §3.1): adaLN-modulated attention and MLP, four RMSNorms.

    The residual stream is re-normalised after each half (middle_ and final_layernorm) — an XR-0
    detail that differs from the usual pre-norm DiT block.
    """

    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        D, eps = config.hidden_size, config.rms_norm_eps
        self.attn = DiTAttention(config)
        self.mlp = DiTMLP(config)
        self.input_layernorm = RMSNorm(D, eps)
        self.middle_layernorm = RMSNorm(D, eps)
        self.post_layernorm = RMSNorm(D, eps)
        self.final_layernorm = RMSNorm(D, eps)
        self.adaln_table = nn.Parameter(torch.randn(6, D) / math.sqrt(D))
        for name in MODULATION_NAMES:  # each (B, 1, D)
            setattr(self, f"hook_{name}", HookPoint())
        self.hook_resid_pre = HookPoint()  # (B, S, D)
        self.hook_attn_out = HookPoint()  # (B, S, D) attention output (after o_proj, before gate)
        self.hook_resid_mid = HookPoint()  # (B, S, D) after middle_layernorm
        self.hook_mlp_out = HookPoint()  # (B, S, D) MLP output (before gate)
        self.hook_resid_post = HookPoint()  # (B, S, D) after final_layernorm

    def forward(self, x: torch.Tensor, t_emb: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                vlm_k: torch.Tensor, vlm_v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        mods = (self.adaln_table[None].to(t_emb.dtype) + t_emb).unbind(dim=1)  # 6 x (B, D)
        shift1, scale1, gate1, shift2, scale2, gate2 = (
            getattr(self, f"hook_{n}")(m[:, None]) for n, m in zip(MODULATION_NAMES, mods))
        x = self.hook_resid_pre(x)
        y = self.input_layernorm(x) * (1 + scale1) + shift1
        y = self.hook_attn_out(self.attn(y, cos, sin, vlm_k, vlm_v, mask))
        x = self.hook_resid_mid(self.middle_layernorm(x + gate1 * y))
        y = self.post_layernorm(x) * (1 + scale2) + shift2
        y = self.hook_mlp_out(self.mlp(y))
        return self.hook_resid_post(self.final_layernorm(x + gate2 * y))


class DiT(nn.Module):
    """The stack of `DiTLayer`s (docs/architecture.md §3.1). Layer i attends jointly over the K/V of its
    paired VLM layer (`keys[i]`, `values[i]`, already chosen by the context) and its own tokens.

    The sequence is [sink, state, a_0 .. a_{T-1}] (S = 2 + T); there is no norm after the last
    layer. The embeddings and heads around it live in `FlowActionExpert`.
    """

    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(DiTLayer(config) for _ in range(config.num_layers))

    def forward(self, x: torch.Tensor, t_emb: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                keys: Sequence[torch.Tensor], values: Sequence[torch.Tensor],
                mask: torch.Tensor) -> torch.Tensor:
        """x (B, S, D), t_emb (B, 6, D), cos/sin (B, S, h), keys/values one (B, K, L, h) per
        layer, mask (B, S, L + S) bool -> (B, S, D)."""
        if len(keys) != len(self.layers) or len(values) != len(self.layers):
            raise ValueError(f"the DiT has {len(self.layers)} layers but got K/V for "
                             f"{len(keys)}/{len(values)} VLM layers")
        for layer, k, v in zip(self.layers, keys, values):
            x = layer(x, t_emb, cos, sin, k, v, mask)
        return x
