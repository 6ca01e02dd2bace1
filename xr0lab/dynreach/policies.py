"""The tier-0 DynReach policy: a conv encoder in place of the VLM, xr0lab's action expert.

Axis legend: B batch, S image side, G x G image-token grid, E encoder width, L context tokens,
n context layers (= DiT layers), K kv heads, h head dim, H chunk length, A = 2 action dims.

Tier 0 (docs/dynreach.md §4): a small conv encoder stands in for the VLM. It turns the
image, the proprioception and the instruction into L tokens, mixes them with one transformer
layer, and projects them to per-layer keys/values, i.e. a `VLMContext`. The action expert is
xr0lab's own `FlowActionExpert` (DiT blocks, masks, positions, flow code) at a smaller width:
every arm runs the same code paths as the full model and differs only in the knobs of its `Arm`.

Normalisation: actions are divided by v_max (so |a| <= 1), positions map [0, 1] -> [-1, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from xr0lab.config import (ActionConfig, DiTConfig, FlowConfig, ModeConfig, TrainConfig,
                           VLMConfig, XR0Config)
from xr0lab.dynreach.arms import Arm
from xr0lab.dynreach.guidance import guided_sample
from xr0lab.dynreach.instructions import INSTRUCTION_LENGTH, VOCAB
from xr0lab.dynreach.physics import V_MAX
from xr0lab.model.dit import RMSNorm
from xr0lab.model.vlm import VLMContext

# ------------------------------------------------------------------------------------ config


@dataclass(frozen=True)
class Tier0Config:
    """Sizes of the tier-0 model. head_dim * kv heads is what one context token carries."""

    image_size: int = 32
    grid: int = 4                 # image tokens: grid x grid
    encoder_width: int = 64       # E
    dit_layers: int = 4
    dit_width: int = 64
    head_dim: int = 16
    kv_heads: int = 2
    num_steps: int = 5            # flow steps at inference
    chunk_length: int = 16
    # Actions and state ride in the first 2 of `padded_dim` dims with an action mask, as in the
    # released 32-dim layout. Why not 2: the output head is Linear(D -> A), GELU, Linear(A -> A)
    # without bias, and with A = 2 that 2-wide GELU bottleneck can only emit a cone of
    # velocities; the flow loss then plateaus at chance (measured: cos(pred, label) ~ 0).
    padded_dim: int = 32

    def __post_init__(self) -> None:
        if self.image_size not in (32, 64):
            raise ValueError(f"Tier0Config.image_size must be 32 or 64, got {self.image_size}")
        if self.image_size % self.grid or (self.image_size // self.grid) & \
                (self.image_size // self.grid - 1):
            raise ValueError(f"Tier0Config.grid={self.grid} must divide image_size="
                             f"{self.image_size} by a power of two")
        if self.head_dim % 4:
            raise ValueError("Tier0Config.head_dim must be a multiple of 4 (M-RoPE sections)")

    @property
    def num_tokens(self) -> int:
        return self.grid * self.grid + 1 + INSTRUCTION_LENGTH


def xr0_config(cfg: Tier0Config, arm: Arm | None = None, *, freq_coef: float = 1.0) -> XR0Config:
    """The `XR0Config` of the tier-0 action expert for `arm` (None: stage A, release causal).

    The VLMConfig only describes the shape of the context the encoder produces (layers, kv heads,
    head dim); no language model is built from it.
    """
    half = cfg.head_dim // 2
    section = (half - 2 * (half // 3), half // 3, half // 3)
    vlm = VLMConfig(num_layers=cfg.dit_layers, hidden_size=cfg.encoder_width,
                    intermediate_size=2 * cfg.encoder_width, num_heads=cfg.kv_heads,
                    num_kv_heads=cfg.kv_heads, head_dim=cfg.head_dim, mrope_section=section,
                    rope_theta=10_000.0)
    dit = DiTConfig(num_layers=cfg.dit_layers, hidden_size=cfg.dit_width, head_dim=cfg.head_dim,
                    num_kv_heads=cfg.kv_heads, timestep_dim=64)
    mode = ModeConfig() if arm is None else arm.mode()
    # Padded dims are masked out of the frequency term and of its per-sample weight (the
    # released code does neither; with 30 padded dims the term would mostly fit noise on dims
    # nobody executes). The committed results were trained this way.
    train = TrainConfig(prefix_schedule="released" if arm is None else arm.prefix_schedule,
                        reweight=bool(arm and arm.reweight), freq_coef=freq_coef,
                        mask_freq_padding=True, freq_weight="valid_mean", training_repeat=1)
    return XR0Config(name="dynreach-tier0", vlm=vlm, dit=dit,
                     action=ActionConfig(chunk_length=cfg.chunk_length,
                                         action_dim=cfg.padded_dim, state_dim=cfg.padded_dim),
                     mode=mode, flow=FlowConfig(num_steps=cfg.num_steps), train=train)


# ------------------------------------------------------------------------------------ encoder


def pad_dims(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Zero-pad the last axis to `dim` (the action/state layout of the model)."""
    if x.shape[-1] == dim:
        return x
    return torch.cat([x, x.new_zeros(*x.shape[:-1], dim - x.shape[-1])], dim=-1)


def action_mask(batch: int, chunk: int, dim: int) -> torch.Tensor:
    """(B, H, dim) with the 2 DynReach action dims active."""
    mask = torch.zeros(batch, chunk, dim)
    mask[..., :2] = 1.0
    return mask


def normalise_state(state: Any, dim: int = 2) -> torch.Tensor:
    """Positions (B, 2) in [0, 1] -> (B, 1, dim) in [-1, 1], zero-padded."""
    x = torch.as_tensor(np.asarray(state, np.float32))
    return pad_dims((2.0 * x - 1.0).reshape(-1, 1, 2), dim)


def normalise_actions(actions: Any, dim: int = 2) -> torch.Tensor:
    return pad_dims(torch.as_tensor(np.asarray(actions, np.float32)) / V_MAX, dim)


def denormalise_actions(x: torch.Tensor) -> np.ndarray:
    return x[..., :2].detach().double().numpy() * V_MAX


class ConvEncoder(nn.Module):
    """Image + proprioception + instruction -> L tokens -> per-layer K/V (a `VLMContext`).

    Coordinate channels are appended to the image (CoordConv) so that *where* a blob is stays
    linearly readable after the strided convolutions; without them a small conv net has to learn
    positions from padding artefacts.
    """

    def __init__(self, cfg: Tier0Config) -> None:
        super().__init__()
        self.cfg = cfg
        E, n_down = cfg.encoder_width, int(math.log2(cfg.image_size // cfg.grid))
        convs: list[nn.Module] = []
        c_in = 5
        for i in range(n_down):
            c_out = E if i == n_down - 1 else 32
            convs += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.GELU()]
            c_in = c_out
        self.conv = nn.Sequential(*convs[:-1])   # no activation on the token features
        self.image_pos = nn.Parameter(torch.randn(cfg.grid * cfg.grid, E) * 0.02)
        self.state_proj = nn.Linear(2, E)
        self.word = nn.Embedding(len(VOCAB), E)
        self.word_pos = nn.Parameter(torch.randn(INSTRUCTION_LENGTH, E) * 0.02)
        self.mix = nn.TransformerEncoderLayer(E, nhead=4, dim_feedforward=2 * E, dropout=0.0,
                                              batch_first=True, norm_first=True)
        kv = cfg.kv_heads * cfg.head_dim
        self.k_proj = nn.ModuleList(nn.Linear(E, kv) for _ in range(cfg.dit_layers))
        self.v_proj = nn.ModuleList(nn.Linear(E, kv) for _ in range(cfg.dit_layers))
        # Keys are normalised per head, as the VLM's cached keys are (post k_norm).
        self.k_norm = nn.ModuleList(RMSNorm(cfg.head_dim) for _ in range(cfg.dit_layers))
        ys, xs = torch.meshgrid(torch.linspace(1, -1, cfg.image_size),
                                torch.linspace(-1, 1, cfg.image_size), indexing="ij")
        self.register_buffer("coords", torch.stack([xs, ys])[None], persistent=False)

    def tokens(self, image: Any, state: Any, tokens: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Mixed token features (B, L, E) and the prompt mask (B, L) (instruction padding off)."""
        img = torch.as_tensor(np.asarray(image))
        if img.dtype == torch.uint8:
            img = img.float() / 255.0
        if img.shape[1:] != (self.cfg.image_size, self.cfg.image_size, 3):
            raise ValueError(f"image must be (B, {self.cfg.image_size}, {self.cfg.image_size}, 3)"
                             f", got {tuple(img.shape)}")
        B = img.shape[0]
        x = torch.cat([img.permute(0, 3, 1, 2), self.coords.expand(B, -1, -1, -1)], dim=1)
        grid = self.conv(x).flatten(2).transpose(1, 2) + self.image_pos       # (B, G*G, E)
        st = self.state_proj(normalise_state(state))                            # (B, 1, E)
        ids = torch.as_tensor(np.asarray(tokens), dtype=torch.long)
        words = self.word(ids) + self.word_pos                                  # (B, I, E)
        h = torch.cat([grid, st, words], dim=1)                                 # (B, L, E)
        mask = torch.cat([torch.ones(B, grid.shape[1] + 1, dtype=torch.bool), ids != 0], dim=1)
        return self.mix(h, src_key_padding_mask=~mask), mask

    def context(self, feats: torch.Tensor, mask: torch.Tensor) -> VLMContext:
        """Per-layer K/V from token features (B, L, E): what the DiT attends to."""
        B, L, _ = feats.shape
        K, h = self.cfg.kv_heads, self.cfg.head_dim
        keys = tuple(norm(p(feats).view(B, L, K, h)).transpose(1, 2)
                     for p, norm in zip(self.k_proj, self.k_norm))                # (B, K, L, h)
        values = tuple(p(feats).view(B, L, K, h).transpose(1, 2) for p in self.v_proj)
        positions = torch.arange(L).expand(3, B, L)
        image_mask = torch.zeros(B, L, dtype=torch.bool)
        image_mask[:, :self.cfg.grid ** 2] = True
        return VLMContext(keys=keys, values=values, prompt_mask=mask, positions=positions,
                          vlm_layers=tuple(range(self.cfg.dit_layers)),
                          image_token_mask=image_mask)

    def forward(self, image: Any, state: Any, tokens: Any) -> VLMContext:
        return self.context(*self.tokens(image, state, tokens))


# ------------------------------------------------------------------------------------ policy


class Tier0Policy(nn.Module):
    """Conv encoder + `FlowActionExpert`. The expert's config carries the arm's mode."""

    def __init__(self, cfg: Tier0Config, arm: Arm | None = None, *, freq_coef: float = 1.0):
        super().__init__()
        from xr0lab.model.expert import FlowActionExpert

        self.cfg = cfg
        self.arm = arm
        self.encoder = ConvEncoder(cfg)
        self.expert = FlowActionExpert(xr0_config(cfg, arm, freq_coef=freq_coef))

    def context(self, obs: dict) -> VLMContext:
        return self.encoder(obs["image"], obs["state"], obs["tokens"])

    @torch.no_grad()
    def act(self, obs: dict, noise: torch.Tensor, *, prefix: Any = None, prefix_length: int = 0,
            guidance: tuple[Any, Any] | None = None, max_guidance: float = 5.0,
            num_steps: int | None = None, context: VLMContext | None = None) -> np.ndarray:
        """One chunk (B, H, 2) in world units from an observation batch and noise (B, H, 2).

        prefix: committed actions (B, >= p, 2) in world units (hard prefix, mode 'prefix').
        guidance: (committed remainder (B, R, 2), weights (H,)) for inference-time guidance.
        """
        ctx = self.context(obs) if context is None else context
        A = self.cfg.padded_dim
        state = normalise_state(obs["state"], A)
        # Inactive dims get zero noise: the action mask zeroes them at the projector input, so
        # their values never reach the active ones; only the 2 active dims are drawn (CRN).
        noise = pad_dims(noise, A)
        mask = action_mask(noise.shape[0], noise.shape[1], A)
        if guidance is not None:
            target, weights = guidance
            with torch.enable_grad():
                x = guided_sample(self.expert, ctx, state, mask, noise,
                                  normalise_actions(target, A),
                                  torch.as_tensor(np.asarray(weights, np.float32)),
                                  num_steps or self.cfg.num_steps, max_guidance)
            return denormalise_actions(x)
        pre = None if not prefix_length else normalise_actions(prefix, A)
        x = self.expert.sample(ctx, state, mask, noise=noise, num_steps=num_steps,
                               prefix=pre, prefix_length=prefix_length)
        return denormalise_actions(x)
