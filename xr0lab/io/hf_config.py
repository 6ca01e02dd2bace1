"""config.json <-> XR0Config, in the spelling of the released checkpoints.

`vlm_config` is a Qwen3VLConfig dict as transformers 4.57 writes it (`rope_scaling` plus a
top-level `rope_theta`); reading also accepts 5.x's `rope_parameters`. `dit_config` holds the
released four fields plus what xr0lab needs to rebuild a non-default DiT. An `xr0lab` block
(mode, flow steps) is ours; released files lack it. Fields xr0lab cannot represent are rejected
by name in a `CheckpointError`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch

from xr0lab.config import (IMAGE_PAD_ID, VIDEO_PAD_ID, VISION_END_ID, VISION_START_ID,
                           ActionConfig, ConfigError, DiTConfig, FlowConfig, Mode, ModeConfig,
                           VLMConfig, XR0Config)
from xr0lab.io.errors import CheckpointError

CONFIG_NAME = "config.json"
MODEL_TYPE = "mibot"


def vlm_config_to_dict(vlm: VLMConfig) -> dict[str, Any]:
    """A Qwen3VLConfig dict in transformers 4.57's spelling (what released configs use):
    `rope_scaling` plus a top-level `rope_theta` in text_config, not 5.x's `rope_parameters`."""
    text = {
        "model_type": "qwen3_vl_text", "vocab_size": vlm.vocab_size,
        "hidden_size": vlm.hidden_size, "intermediate_size": vlm.intermediate_size,
        "num_hidden_layers": vlm.num_layers, "num_attention_heads": vlm.num_heads,
        "num_key_value_heads": vlm.num_kv_heads, "head_dim": vlm.head_dim,
        "hidden_act": "silu", "max_position_embeddings": vlm.max_position_embeddings,
        "rms_norm_eps": vlm.rms_norm_eps, "attention_bias": False, "attention_dropout": 0.0,
        "initializer_range": 0.02, "use_cache": True,
        "rope_theta": vlm.rope_theta,
        "rope_scaling": {"rope_type": "default", "mrope_section": list(vlm.mrope_section),
                         "mrope_interleaved": True},
        "tie_word_embeddings": vlm.tie_word_embeddings,
        "bos_token_id": 151643, "eos_token_id": 151645,
    }
    vision = {
        "model_type": "qwen3_vl", "depth": vlm.vision_depth, "hidden_size": vlm.vision_hidden_size,
        "intermediate_size": vlm.vision_intermediate_size, "num_heads": vlm.vision_num_heads,
        "in_channels": 3, "patch_size": vlm.patch_size,
        "temporal_patch_size": vlm.temporal_patch_size,
        "spatial_merge_size": vlm.spatial_merge_size, "out_hidden_size": vlm.hidden_size,
        "num_position_embeddings": vlm.num_position_embeddings,
        "deepstack_visual_indexes": list(vlm.deepstack_visual_indexes),
        "hidden_act": "gelu_pytorch_tanh", "initializer_range": 0.02,
    }
    return {
        "model_type": "qwen3_vl", "architectures": ["Qwen3VLForConditionalGeneration"],
        "text_config": text, "vision_config": vision,
        "image_token_id": IMAGE_PAD_ID, "video_token_id": VIDEO_PAD_ID,
        "vision_start_token_id": VISION_START_ID, "vision_end_token_id": VISION_END_ID,
        "tie_word_embeddings": vlm.tie_word_embeddings,
    }


def _get(d: Mapping[str, Any], key: str, where: str, default: Any = ...) -> Any:
    if key in d and d[key] is not None:
        return d[key]
    if default is ...:
        raise CheckpointError(f"config.json: {where}.{key} is missing")
    return default


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise CheckpointError(f"config.json: {message}")


def _rope_fields(text: Mapping[str, Any]) -> tuple[float, tuple[int, ...]]:
    """(rope_theta, mrope_section) from either spelling of the text tower's rotary settings.

    transformers 4.57: `rope_scaling` {rope_type, mrope_section, mrope_interleaved} + `rope_theta`.
    transformers 5.x: `rope_parameters` {rope_type, rope_theta, mrope_section, mrope_interleaved}.
    """
    where = "vlm_config.text_config"
    params = text.get("rope_parameters")
    scaling = text.get("rope_scaling")
    if params is not None:
        theta = _get(params, "rope_theta", f"{where}.rope_parameters",
                     text.get("rope_theta", ...))
        rope = params
        if text.get("rope_theta") is not None and float(text["rope_theta"]) != float(theta):
            raise CheckpointError(f"config.json: {where} has rope_theta {text['rope_theta']} and "
                                  f"rope_parameters.rope_theta {theta}; they must agree")
    else:
        theta = _get(text, "rope_theta", where)
        rope = scaling or {}
    _require(bool(rope), f"{where} has neither rope_parameters (transformers 5.x) nor "
             "rope_scaling (4.57): the M-RoPE sections are unknown")
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    _require(rope_type == "default", f"{where} rope_type {rope_type!r} is not supported "
             "(Qwen3-VL uses 'default' M-RoPE)")
    _require(rope.get("mrope_interleaved", True) is True, f"{where}: only interleaved M-RoPE "
             "(mrope_interleaved: true, as Qwen3-VL) is supported")
    section = tuple(int(s) for s in _get(rope, "mrope_section", f"{where} rope settings"))
    return float(theta), section


def vlm_config_from_dict(d: Mapping[str, Any]) -> VLMConfig:
    """VLMConfig from a Qwen3VLConfig dict (4.57 or 5.x spelling). Extra keys are ignored; fields
    xr0lab cannot represent (other activations, biases, token ids) are rejected by name."""
    text = _get(d, "text_config", "vlm_config")
    vision = _get(d, "vision_config", "vlm_config")
    tw, vw = "vlm_config.text_config", "vlm_config.vision_config"
    for key, ours in (("image_token_id", IMAGE_PAD_ID), ("video_token_id", VIDEO_PAD_ID),
                      ("vision_start_token_id", VISION_START_ID),
                      ("vision_end_token_id", VISION_END_ID)):
        _require(d.get(key, ours) == ours, f"vlm_config.{key} is {d.get(key)}; xr0lab's "
                 f"prompt code uses the Qwen3-VL id {ours}")
    _require(text.get("hidden_act", "silu") == "silu", f"{tw}.hidden_act must be 'silu'")
    _require(not text.get("attention_bias", False), f"{tw}.attention_bias must be false")
    _require(vision.get("hidden_act", "gelu_pytorch_tanh") == "gelu_pytorch_tanh",
             f"{vw}.hidden_act must be 'gelu_pytorch_tanh'")
    _require(vision.get("in_channels", 3) == 3, f"{vw}.in_channels must be 3")
    hidden = int(_get(text, "hidden_size", tw))
    _require(int(vision.get("out_hidden_size", hidden)) == hidden,
             f"{vw}.out_hidden_size ({vision.get('out_hidden_size')}) must equal "
             f"{tw}.hidden_size ({hidden})")
    theta, section = _rope_fields(text)
    heads = int(_get(text, "num_attention_heads", tw))
    # 4.57 writes tie_word_embeddings at the top level (and in text_config); absent means tied,
    # the PretrainedConfig default the released configs were written with.
    tie = d.get("tie_word_embeddings", text.get("tie_word_embeddings", True))
    try:
        return VLMConfig(
            num_layers=int(_get(text, "num_hidden_layers", tw)), hidden_size=hidden,
            intermediate_size=int(_get(text, "intermediate_size", tw)), num_heads=heads,
            num_kv_heads=int(_get(text, "num_key_value_heads", tw, heads)),
            head_dim=int(_get(text, "head_dim", tw, hidden // heads)),
            rope_theta=theta, mrope_section=section,
            vocab_size=int(_get(text, "vocab_size", tw)),
            rms_norm_eps=float(_get(text, "rms_norm_eps", tw, 1e-6)),
            max_position_embeddings=int(_get(text, "max_position_embeddings", tw, 262144)),
            tie_word_embeddings=bool(tie),
            vision_depth=int(_get(vision, "depth", vw)),
            vision_hidden_size=int(_get(vision, "hidden_size", vw)),
            vision_num_heads=int(_get(vision, "num_heads", vw)),
            vision_intermediate_size=int(_get(vision, "intermediate_size", vw)),
            patch_size=int(_get(vision, "patch_size", vw)),
            temporal_patch_size=int(_get(vision, "temporal_patch_size", vw, 2)),
            spatial_merge_size=int(_get(vision, "spatial_merge_size", vw, 2)),
            num_position_embeddings=int(_get(vision, "num_position_embeddings", vw)),
            deepstack_visual_indexes=tuple(int(i) for i in
                                           _get(vision, "deepstack_visual_indexes", vw)),
        )
    except ConfigError as err:
        raise CheckpointError(f"config.json: vlm_config describes an invalid model: {err}") from err


def dit_config_to_dict(dit: DiTConfig) -> dict[str, Any]:
    """The released four fields plus what xr0lab needs to rebuild a non-default DiT exactly."""
    return {
        "hidden_size": dit.hidden_size, "num_hidden_layers": dit.num_layers,
        "head_dim": dit.head_dim, "num_key_value_heads": dit.num_kv_heads,
        "num_attention_heads": dit.num_heads, "intermediate_size": dit.intermediate_size,
        "rms_norm_eps": dit.rms_norm_eps, "frequency_embedding_size": dit.timestep_dim,
        "timestep_max_period": dit.timestep_max_period,
    }


def dit_config_from_dict(d: Mapping[str, Any]) -> DiTConfig:
    """DiTConfig from `dit_config`; fields the released file omits take the spec's values."""
    w = "dit_config"
    defaults = DiTConfig()
    hidden = int(_get(d, "hidden_size", w))
    head_dim = int(_get(d, "head_dim", w))
    intermediate = int(_get(d, "intermediate_size", w, defaults.mlp_ratio * hidden))
    _require(intermediate % hidden == 0, f"{w}.intermediate_size ({intermediate}) must be a "
             f"multiple of hidden_size ({hidden})")
    if "num_attention_heads" in d and head_dim:
        _require(int(d["num_attention_heads"]) * head_dim == hidden,
                 f"{w}.num_attention_heads ({d['num_attention_heads']}) x head_dim ({head_dim}) "
                 f"must equal hidden_size ({hidden})")
    try:
        return DiTConfig(
            num_layers=int(_get(d, "num_hidden_layers", w)), hidden_size=hidden,
            head_dim=head_dim, num_kv_heads=int(_get(d, "num_key_value_heads", w)),
            mlp_ratio=intermediate // hidden,
            rms_norm_eps=float(_get(d, "rms_norm_eps", w, defaults.rms_norm_eps)),
            timestep_dim=int(_get(d, "frequency_embedding_size", w, defaults.timestep_dim)),
            timestep_max_period=float(_get(d, "timestep_max_period", w,
                                           defaults.timestep_max_period)),
        )
    except ConfigError as err:
        raise CheckpointError(f"config.json: dit_config describes an invalid model: {err}") from err


def config_to_dict(config: XR0Config, *, torch_dtype: torch.dtype | None = None) -> dict[str, Any]:
    """config.json contents. The `xr0lab` block (mode, flow steps) is ours; released files
    lack it."""
    out: dict[str, Any] = {
        "model_type": MODEL_TYPE,
        "vlm_config": vlm_config_to_dict(config.vlm),
        "dit_config": dit_config_to_dict(config.dit),
        "state_length": config.action.state_length, "state_dim": config.action.state_dim,
        "action_length": config.action.chunk_length, "action_dim": config.action.action_dim,
        "xr0lab": {"mode": dataclasses.asdict(config.mode),
                   "num_steps": config.flow.num_steps},
    }
    if torch_dtype is not None:
        out["torch_dtype"] = str(torch_dtype).removeprefix("torch.")
    return out


def _resolve_mode(mode: Mode | ModeConfig | None, saved: Mapping[str, Any] | None) -> ModeConfig:
    if mode is not None:
        try:
            return ModeConfig.coerce(mode)
        except ConfigError as err:
            raise CheckpointError(str(err)) from err
    if saved:  # written by xr0lab's save_pretrained
        try:
            return ModeConfig(**saved)
        except (TypeError, ConfigError) as err:
            raise CheckpointError(f"config.json: xr0lab.mode is invalid: {err}") from err
    return ModeConfig.for_mode("release")  # released checkpoints: the released inference code


def config_from_dict(d: Mapping[str, Any], *, mode: Mode | ModeConfig | None = None,
                     attn_implementation: str | None = None, name: str = "pretrained") -> XR0Config:
    """XR0Config from config.json contents.

    mode: None = the mode xr0lab saved, else "release" (what a released checkpoint runs as);
    a mode name or a ModeConfig overrides it.
    """
    model_type = d.get("model_type", MODEL_TYPE)
    _require(model_type == MODEL_TYPE, f"model_type is {model_type!r}, expected {MODEL_TYPE!r} "
             "(an XR-0 checkpoint: a Qwen3-VL backbone plus the DiT action expert)")
    vlm = vlm_config_from_dict(_get(d, "vlm_config", "<top level>"))
    dit = dit_config_from_dict(_get(d, "dit_config", "<top level>"))
    ours = d.get("xr0lab") or {}
    defaults = ActionConfig()
    try:
        action = ActionConfig(chunk_length=int(d.get("action_length", defaults.chunk_length)),
                              action_dim=int(d.get("action_dim", defaults.action_dim)),
                              state_dim=int(d.get("state_dim", defaults.state_dim)),
                              state_length=int(d.get("state_length", defaults.state_length)))
        flow = FlowConfig(num_steps=int(ours.get("num_steps", FlowConfig().num_steps)))
        return XR0Config(name=name, vlm=vlm, dit=dit, action=action,
                         mode=_resolve_mode(mode, ours.get("mode")), flow=flow,
                         attn_implementation=attn_implementation or "sdpa")
    except ConfigError as err:
        raise CheckpointError(f"config.json describes an invalid model: {err}") from err


__all__ = [
    "CONFIG_NAME", "MODEL_TYPE", "config_from_dict", "config_to_dict", "dit_config_from_dict",
    "dit_config_to_dict", "vlm_config_from_dict", "vlm_config_to_dict",
]
