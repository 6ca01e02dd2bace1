"""Configs and presets: one frozen dataclass per component, composed into `XR0Config`.

`preset("xr0")` is the real 4.7B shape (docs/architecture.md §1-3); `preset("tiny")` runs the same code
paths on a laptop CPU. Every invalid combination is rejected in `__post_init__` with a message
that names the offending fields, so a bad config never reaches a forward pass.
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

Mode = Literal["release", "xr0-async"]
# "causal": release mask (j <= i). "band": the Λ mask (i - w <= j <= i). "full": bidirectional
# among actions. "hard_block": causal, plus tokens at or after b = p + w never see tokens before b
# (an ablation control, not XR-0's method: it blocks prefix information in every layer).
ActionAttention = Literal["causal", "band", "full", "hard_block"]
TimeSampling = Literal["beta", "logit_normal", "uniform"]
# "released": with prob 0.5 p ~ U{1..min(6, T)} else 0 (post-training code).
# "paper": p ~ U{0..6} (the technical report's wording).
PrefixSchedule = Literal["released", "paper"]
# "precise": noise, x and t in float32 through the sampler (the DiT computes in the model dtype);
# float32 actions. "release": the released inference in the model dtype — noise drawn in it, x and
# t kept in it (bf16: t = 0.2002, 0.4004, ...), RoPE inv_freq rounded to it as the official
# server's `.to(torch.bfloat16)` leaves it, actions returned in it. Identical for a float32 model.
Numerics = Literal["precise", "release"]
# Per-sample weight of the frequency term. "released": w.mean over all (T - p) x A entries, padded
# dims included (they hold the raw clamped L1 error). "valid_mean": mean over valid entries only.
FreqWeight = Literal["released", "valid_mean"]

# Qwen3-VL special tokens at their real ids (docs/architecture.md §8).
VISION_START_ID = 151652
VISION_END_ID = 151653
IMAGE_PAD_ID = 151655
VIDEO_PAD_ID = 151656
QWEN_VOCAB_SIZE = 151936


class ConfigError(ValueError):
    """An invalid combination of config fields; the message names the fields."""


@dataclass(frozen=True)
class VLMConfig:
    """Shape of the Qwen3-VL backbone (text tower + vision tower)."""

    num_layers: int = 36
    hidden_size: int = 2560
    intermediate_size: int = 9728
    num_heads: int = 32
    num_kv_heads: int = 8
    head_dim: int = 128
    rope_theta: float = 5_000_000.0
    mrope_section: tuple[int, ...] = (24, 20, 20)
    vocab_size: int = QWEN_VOCAB_SIZE
    rms_norm_eps: float = 1e-6
    max_position_embeddings: int = 262144
    tie_word_embeddings: bool = True
    vision_depth: int = 24
    vision_hidden_size: int = 1024
    vision_num_heads: int = 16
    vision_intermediate_size: int = 4096
    patch_size: int = 16
    temporal_patch_size: int = 2
    spatial_merge_size: int = 2
    num_position_embeddings: int = 2304
    deepstack_visual_indexes: tuple[int, ...] = (5, 11, 17)

    def __post_init__(self) -> None:
        _positive(self, "num_layers", "hidden_size", "intermediate_size", "num_heads",
                  "num_kv_heads", "head_dim", "vision_depth", "vision_hidden_size",
                  "vision_num_heads", "patch_size", "spatial_merge_size")
        if self.num_heads % self.num_kv_heads:
            raise ConfigError(f"VLMConfig.num_heads ({self.num_heads}) must be a multiple of "
                              f"VLMConfig.num_kv_heads ({self.num_kv_heads})")
        if sum(self.mrope_section) != self.head_dim // 2:
            raise ConfigError(f"sum(VLMConfig.mrope_section) = {sum(self.mrope_section)} must equal "
                              f"VLMConfig.head_dim // 2 = {self.head_dim // 2}")
        if self.vocab_size <= VIDEO_PAD_ID:
            raise ConfigError(f"VLMConfig.vocab_size ({self.vocab_size}) must exceed the Qwen "
                              f"special-token ids (up to {VIDEO_PAD_ID})")
        root = round(self.num_position_embeddings ** 0.5)
        if root * root != self.num_position_embeddings:
            raise ConfigError(f"VLMConfig.num_position_embeddings ({self.num_position_embeddings}) "
                              "must be a perfect square")
        bad = [i for i in self.deepstack_visual_indexes if not 0 <= i < self.vision_depth]
        if bad:
            raise ConfigError(f"VLMConfig.deepstack_visual_indexes {bad} must lie in "
                              f"[0, vision_depth={self.vision_depth})")
        if self.vision_hidden_size % self.vision_num_heads:
            raise ConfigError("VLMConfig.vision_hidden_size must be a multiple of vision_num_heads")

    @property
    def pixels_per_token(self) -> int:
        """Side of the square of pixels one LLM visual token covers (32 for Qwen3-VL)."""
        return self.patch_size * self.spatial_merge_size

    def to_hf(self, attn_implementation: str | None = None):
        """The equivalent `transformers.Qwen3VLConfig`, in the installed library's spelling of the
        rotary settings: 5.x `rope_parameters`, 4.57 `rope_scaling` plus a top-level `rope_theta`
        (4.57 silently ignores `rope_parameters` and then has no M-RoPE sections)."""
        import inspect

        from transformers import Qwen3VLConfig, Qwen3VLTextConfig

        text = dict(
            vocab_size=self.vocab_size, hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size, num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads, num_key_value_heads=self.num_kv_heads,
            head_dim=self.head_dim, rms_norm_eps=self.rms_norm_eps,
            max_position_embeddings=self.max_position_embeddings, hidden_act="silu",
            attention_bias=False,
            # 4.57 ties the head by the text config's flag (default False there), 5.x by the top
            # level's; set both.
            tie_word_embeddings=self.tie_word_embeddings,
        )
        rotary = {"rope_type": "default", "mrope_section": list(self.mrope_section),
                  "mrope_interleaved": True}
        if "rope_parameters" in inspect.signature(Qwen3VLTextConfig.__init__).parameters:
            text["rope_parameters"] = {**rotary, "rope_theta": self.rope_theta}
        else:
            text.update(rope_scaling=rotary, rope_theta=self.rope_theta)
        vision = dict(
            depth=self.vision_depth, hidden_size=self.vision_hidden_size,
            intermediate_size=self.vision_intermediate_size, num_heads=self.vision_num_heads,
            patch_size=self.patch_size, temporal_patch_size=self.temporal_patch_size,
            spatial_merge_size=self.spatial_merge_size, out_hidden_size=self.hidden_size,
            num_position_embeddings=self.num_position_embeddings,
            deepstack_visual_indexes=list(self.deepstack_visual_indexes),
            hidden_act="gelu_pytorch_tanh",
        )
        cfg = Qwen3VLConfig(text_config=text, vision_config=vision,
                            image_token_id=IMAGE_PAD_ID, video_token_id=VIDEO_PAD_ID,
                            vision_start_token_id=VISION_START_ID,
                            vision_end_token_id=VISION_END_ID,
                            tie_word_embeddings=self.tie_word_embeddings)
        if attn_implementation is not None:
            cfg._attn_implementation = attn_implementation
        return cfg


@dataclass(frozen=True)
class DiTConfig:
    """The flow-matching action expert (docs/architecture.md §3)."""

    num_layers: int = 16
    hidden_size: int = 1024
    head_dim: int = 128
    num_kv_heads: int = 8
    mlp_ratio: int = 4
    rms_norm_eps: float = 1e-6
    timestep_dim: int = 256
    timestep_max_period: float = 10_000.0

    def __post_init__(self) -> None:
        _positive(self, "num_layers", "hidden_size", "head_dim", "num_kv_heads", "mlp_ratio",
                  "timestep_dim")
        if self.hidden_size % self.head_dim:
            raise ConfigError(f"DiTConfig.hidden_size ({self.hidden_size}) must be a multiple of "
                              f"DiTConfig.head_dim ({self.head_dim})")
        if self.num_heads % self.num_kv_heads:
            raise ConfigError(f"DiT query heads (hidden_size / head_dim = {self.num_heads}) must be "
                              f"a multiple of DiTConfig.num_kv_heads ({self.num_kv_heads})")
        if self.timestep_dim % 2:
            raise ConfigError("DiTConfig.timestep_dim must be even ([cos, sin] halves)")

    @property
    def num_heads(self) -> int:
        return self.hidden_size // self.head_dim

    @property
    def intermediate_size(self) -> int:
        return self.mlp_ratio * self.hidden_size


@dataclass(frozen=True)
class ActionConfig:
    """Chunk and state shapes (docs/architecture.md §8: state_length 1, state_dim 32, action 30 x 32)."""

    chunk_length: int = 30
    action_dim: int = 32
    state_dim: int = 32
    state_length: int = 1

    def __post_init__(self) -> None:
        _positive(self, "chunk_length", "action_dim", "state_dim")
        _integers(self, "state_length")
        if self.state_length != 1:
            raise ConfigError(f"ActionConfig.state_length must be 1 (one state token), "
                              f"got {self.state_length}")


@dataclass(frozen=True)
class ModeConfig:
    """How the DiT treats action tokens: mask, RoPE offset, prefixes (docs/architecture.md §4-5).

    Build it with `ModeConfig.for_mode(...)` so the mode's defaults are filled in; every field
    stays overridable for ablations.
    """

    mode: Mode = "release"
    action_attention: ActionAttention = "causal"
    window: int | None = None  # band / hard_block width w; None for causal and full
    rope_offset: int = 0
    prefix_hiding: bool = False  # training-only random hiding of early prefix columns

    def __post_init__(self) -> None:
        if self.mode not in get_args(Mode):
            raise ConfigError(f"ModeConfig.mode must be 'release' or 'xr0-async', got {self.mode!r}")
        if self.action_attention not in get_args(ActionAttention):
            raise ConfigError("ModeConfig.action_attention must be one of causal, band, full, "
                              f"hard_block; got {self.action_attention!r}")
        _integers(self, "window", optional=True)
        _integers(self, "rope_offset")
        needs_window = self.action_attention in ("band", "hard_block")
        if needs_window and self.window is None:
            raise ConfigError(f"ModeConfig.window is required for action_attention="
                              f"{self.action_attention!r}")
        if self.window is not None and self.window < 0:
            raise ConfigError(f"ModeConfig.window must be >= 0, got {self.window}")
        if not needs_window and self.window is not None:
            raise ConfigError(f"ModeConfig.window={self.window} has no meaning with action_attention="
                              f"{self.action_attention!r}; leave it None")
        if self.rope_offset < 0:
            raise ConfigError(f"ModeConfig.rope_offset must be >= 0, got {self.rope_offset}")

    @property
    def supports_prefix(self) -> bool:
        return self.mode == "xr0-async"

    @classmethod
    def coerce(cls, mode: "Mode | ModeConfig") -> "ModeConfig":
        """A ModeConfig as given, or a mode name with that mode's defaults."""
        return mode if isinstance(mode, ModeConfig) else cls.for_mode(mode)

    @classmethod
    def for_mode(cls, mode: Mode, *, action_attention: ActionAttention | None = None,
                 window: int | None = None, rope_offset: int | None = None,
                 prefix_hiding: bool | None = None) -> "ModeConfig":
        """Mode defaults: release = causal, no offset; xr0-async = Λ band w=4, +10, hiding."""
        if mode == "release":
            defaults: dict[str, Any] = dict(action_attention="causal", window=None,
                                            rope_offset=0, prefix_hiding=False)
        elif mode == "xr0-async":
            defaults = dict(action_attention="band", window=4, rope_offset=10, prefix_hiding=True)
        else:
            raise ConfigError(f"unknown mode {mode!r}; expected 'release' or 'xr0-async'")
        if action_attention is not None:
            defaults["action_attention"] = action_attention
            if action_attention in ("causal", "full"):
                defaults["window"] = None
            elif defaults["window"] is None:
                defaults["window"] = 4
        for key, value in (("window", window), ("rope_offset", rope_offset),
                           ("prefix_hiding", prefix_hiding)):
            if value is not None:
                defaults[key] = value
        return cls(mode=mode, **defaults)


@dataclass(frozen=True)
class FlowConfig:
    """Flow matching (docs/architecture.md §6). Convention: t = 0 is noise, t = 1 is data."""

    num_steps: int = 5
    time_sampling: TimeSampling = "beta"
    beta_alpha: float = 1.5
    beta_beta: float = 1.0
    time_scale: float = 0.999  # t = 0.999 * (1 - u), u ~ Beta(1.5, 1)
    numerics: Numerics = "precise"  # sampler precision; "release" is the released bf16 loop

    def __post_init__(self) -> None:
        _integers(self, "num_steps")
        if self.num_steps < 1:
            raise ConfigError(f"FlowConfig.num_steps must be >= 1, got {self.num_steps}")
        if self.time_sampling not in get_args(TimeSampling):
            raise ConfigError("FlowConfig.time_sampling must be beta, logit_normal or uniform; "
                              f"got {self.time_sampling!r}")
        if self.numerics not in get_args(Numerics):
            raise ConfigError("FlowConfig.numerics must be 'precise' or 'release'; got "
                              f"{self.numerics!r}")


@dataclass(frozen=True)
class TrainConfig:
    """The xr0-async post-training objective (docs/architecture.md §7)."""

    prefix_schedule: PrefixSchedule = "released"
    prefix_probability: float = 0.5
    max_prefix: int = 6
    hide_probability: float = 0.5
    hide_keep_last: int = 2
    reweight: bool = True
    weight_clamp: tuple[float, float] = (0.5, 5.0)
    mse_coef: float = 0.5
    freq_coef: float = 1.0  # 0 disables the frequency term
    mask_freq_padding: bool = False  # released code does not mask padded dims in the FFT term
    freq_weight: FreqWeight = "released"  # per-sample weight of the frequency term (see FreqWeight)
    training_repeat: int = 4

    def __post_init__(self) -> None:
        if self.prefix_schedule not in ("released", "paper"):
            raise ConfigError("TrainConfig.prefix_schedule must be 'released' or 'paper', got "
                              f"{self.prefix_schedule!r}")
        if self.freq_weight not in get_args(FreqWeight):
            raise ConfigError("TrainConfig.freq_weight must be 'released' or 'valid_mean', got "
                              f"{self.freq_weight!r}")
        if not 0 <= self.prefix_probability <= 1 or not 0 <= self.hide_probability <= 1:
            raise ConfigError("TrainConfig.prefix_probability and hide_probability must be in [0, 1]")
        _integers(self, "max_prefix", "hide_keep_last", "training_repeat")
        if self.max_prefix < 0 or self.hide_keep_last < 0:
            raise ConfigError("TrainConfig.max_prefix and hide_keep_last must be >= 0")
        lo, hi = self.weight_clamp
        if not 0 < lo <= hi:
            raise ConfigError(f"TrainConfig.weight_clamp must satisfy 0 < lo <= hi, got {self.weight_clamp}")
        if self.training_repeat < 1:
            raise ConfigError(f"TrainConfig.training_repeat must be >= 1, got {self.training_repeat}")


@dataclass(frozen=True)
class XR0Config:
    """Root config. `XR0Model(config)` builds exactly this shape."""

    name: str = "xr0"
    vlm: VLMConfig = field(default_factory=VLMConfig)
    dit: DiTConfig = field(default_factory=DiTConfig)
    action: ActionConfig = field(default_factory=ActionConfig)
    mode: ModeConfig = field(default_factory=ModeConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    attn_implementation: str = "sdpa"

    def __post_init__(self) -> None:
        v, d = self.vlm, self.dit
        if d.head_dim != v.head_dim:
            raise ConfigError(f"dit.head_dim ({d.head_dim}) must equal vlm.head_dim ({v.head_dim}): "
                              "the DiT attends over the VLM's cached keys without re-projection")
        if d.num_kv_heads != v.num_kv_heads:
            raise ConfigError(f"dit.num_kv_heads ({d.num_kv_heads}) must equal vlm.num_kv_heads "
                              f"({v.num_kv_heads}): the DiT consumes the VLM's K/V heads as they are")
        if d.num_layers > v.num_layers:
            raise ConfigError(f"dit.num_layers ({d.num_layers}) must not exceed vlm.num_layers "
                              f"({v.num_layers}): DiT layer i reads VLM layer "
                              "vlm.num_layers - dit.num_layers + i")
        if self.mode.window is not None and self.mode.window >= 10 * self.action.chunk_length:
            raise ConfigError(f"mode.window ({self.mode.window}) is implausibly large for "
                              f"action.chunk_length ({self.action.chunk_length})")

    @property
    def vlm_layer_for_dit_layer(self) -> tuple[int, ...]:
        """DiT layer i reads VLM cache entry n_vlm - n_dit + i (the last n_dit layers)."""
        offset = self.vlm.num_layers - self.dit.num_layers
        return tuple(offset + i for i in range(self.dit.num_layers))

    def replace(self, **changes: Any) -> "XR0Config":
        """A copy with top-level fields replaced (re-validated)."""
        return dataclasses.replace(self, **changes)

    def with_mode(self, mode: Mode, **overrides: Any) -> "XR0Config":
        return self.replace(mode=ModeConfig.for_mode(mode, **overrides))


def _integers(obj: Any, *names: str, optional: bool = False) -> None:
    """Counts, sizes and widths must be ints: a float such as window=2.5 would pass every range
    check and then be truncated, or fail deep in a mask builder."""
    for name in names:
        value = getattr(obj, name)
        if optional and value is None:
            continue
        if not isinstance(value, numbers.Integral) or isinstance(value, bool):
            raise ConfigError(f"{type(obj).__name__}.{name} must be an int"
                              f"{' or None' if optional else ''}, got {value!r} "
                              f"({type(value).__name__})")


def _positive(obj: Any, *names: str) -> None:
    _integers(obj, *names)
    for name in names:
        value = getattr(obj, name)
        if value < 1:
            raise ConfigError(f"{type(obj).__name__}.{name} must be >= 1, got {value}")


TINY_VLM = VLMConfig(
    num_layers=8, hidden_size=128, intermediate_size=256, num_heads=4, num_kv_heads=2,
    head_dim=32, mrope_section=(6, 5, 5), max_position_embeddings=4096,
    vision_depth=2, vision_hidden_size=64, vision_num_heads=2, vision_intermediate_size=128,
    num_position_embeddings=256, deepstack_visual_indexes=(0, 1),
)
# timestep_dim stays at its default, 256, in every preset: the released TimestepEmbedder hard-codes
# it, so a checkpoint of any size loads in the released code unchanged.
TINY_DIT = DiTConfig(num_layers=4, hidden_size=128, head_dim=32, num_kv_heads=2)

# A CPU-sized step between tiny and the real shape (where GEMMs start to matter), used to check the
# latency cost model: VLM and DiT 8 layers of width 512, head dim 64 and 4 KV heads on both sides.
MID_VLM = VLMConfig(
    num_layers=8, hidden_size=512, intermediate_size=1536, num_heads=8, num_kv_heads=4,
    head_dim=64, mrope_section=(12, 10, 10), max_position_embeddings=4096,
    vision_depth=4, vision_hidden_size=256, vision_num_heads=4, vision_intermediate_size=1024,
    num_position_embeddings=1024, deepstack_visual_indexes=(1, 2),
)
MID_DIT = DiTConfig(num_layers=8, hidden_size=512, head_dim=64, num_kv_heads=4)

PRESETS = ("xr0", "mid", "tiny")
_SHAPES = {"xr0": (VLMConfig(), DiTConfig()), "mid": (MID_VLM, MID_DIT), "tiny": (TINY_VLM, TINY_DIT)}


def preset(name: str, *, mode: Mode = "release", window: int | None = None,
           rope_offset: int | None = None, action_attention: ActionAttention | None = None,
           num_steps: int | None = None, vlm_layers: int | None = None,
           dit_layers: int | None = None, chunk_length: int | None = None,
           attn_implementation: str | None = None,
           numerics: Numerics | None = None) -> XR0Config:
    """A named, frozen root config.

    >>> preset("xr0").dit.hidden_size
    1024
    >>> preset("tiny", mode="xr0-async").mode.window
    4
    """
    if name not in _SHAPES:
        raise ConfigError(f"unknown preset {name!r}; available: {', '.join(PRESETS)}")
    vlm, dit = _SHAPES[name]
    if vlm_layers is not None:
        vlm = dataclasses.replace(vlm, num_layers=vlm_layers)
    if dit_layers is not None:
        dit = dataclasses.replace(dit, num_layers=dit_layers)
    action = ActionConfig() if chunk_length is None else ActionConfig(chunk_length=chunk_length)
    flow = FlowConfig(**{k: v for k, v in (("num_steps", num_steps), ("numerics", numerics))
                         if v is not None})
    mode_cfg = ModeConfig.for_mode(mode, action_attention=action_attention, window=window,
                                   rope_offset=rope_offset)
    return XR0Config(name=name, vlm=vlm, dit=dit, action=action, mode=mode_cfg, flow=flow,
                     attn_implementation=attn_implementation or "sdpa")
