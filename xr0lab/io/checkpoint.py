"""Read and write the released XR-0 checkpoint format (spec section 8).

A checkpoint directory holds:

    config.json                         model_type "mibot"; vlm_config (a Qwen3VLConfig dict as
                                        transformers 4.57 writes it), dit_config, state/action
                                        shapes
    model-0000i-of-0000n.safetensors    weights, keys of spec section 3.3; the tied lm_head is not
    model.safetensors.index.json        stored (or one unsharded model.safetensors)
    preprocessor_config.json, tokenizer files   read and written by `XR0Processor`

    model = load_pretrained("/ckpt/xr0-libero", device="cuda")     # bf16 on a GPU by default
    save_pretrained(model, "/tmp/copy", max_shard_size="5GB")

Loading is strict by name and shape: every key the model has (less tied aliases) must be in the
files and nothing else may be; all problems are reported together in one `CheckpointError`, before
any tensor data is read. Weights stream shard by shard into a model whose parameters were built on
the `meta` device, so the only full copy in memory is the model itself.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import socket
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from xr0lab.config import (IMAGE_PAD_ID, VIDEO_PAD_ID, VISION_END_ID, VISION_START_ID,
                           ActionConfig, ConfigError, DiTConfig, FlowConfig, Mode, ModeConfig,
                           VLMConfig, XR0Config)
from xr0lab.model.vlm import resolve_attn_implementation

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
INDEX_NAME = "model.safetensors.index.json"
MODEL_TYPE = "mibot"
DEFAULT_MAX_SHARD_SIZE = "5GB"
# Released layout: the output head shares the input embedding and only the embedding is stored.
TIED_KEYS = {"vlm.lm_head.weight": "vlm.model.language_model.embed_tokens.weight"}
# What a hub download needs; the released repos hold nothing else we read.
_HUB_PATTERNS = ["*.json", "*.safetensors", "*.jinja", "*.txt", "tokenizer*", "vocab*", "merges*"]
_SHARD_RE = re.compile(r"^model-\d{5}-of-\d{5}\.safetensors$")
_HUB_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_SHOW = 8  # how many offending keys of each kind an error lists


class CheckpointError(ValueError):
    """A checkpoint that does not match the model or the released format; the message says how."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """No checkpoint at the given path (and no hub download possible)."""


# ---------------------------------------------------------------------------------------------
# config.json <-> XR0Config
# ---------------------------------------------------------------------------------------------

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


def read_config(path: str | os.PathLike, **kwargs: Any) -> XR0Config:
    """The XR0Config of a local checkpoint directory (kwargs as `config_from_dict`)."""
    directory = resolve_checkpoint_dir(path)
    file = directory / CONFIG_NAME
    if not file.is_file():
        raise CheckpointNotFoundError(f"{file} not found: a checkpoint directory needs "
                                      f"{CONFIG_NAME}")
    try:
        raw = json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{file} is not valid JSON: {err}") from err
    kwargs.setdefault("name", directory.name)
    return config_from_dict(raw, **kwargs)


# ---------------------------------------------------------------------------------------------
# Key sets
# ---------------------------------------------------------------------------------------------

def expected_released_keys(config: XR0Config) -> dict[str, tuple[int, ...]]:
    """Every non-VLM key a released checkpoint holds, with its shape, written from the table in
    spec section 3.3 (deliberately not derived from the module code, so tests compare the two)."""
    D, A, S = config.dit.hidden_size, config.action.action_dim, config.action.state_dim
    h, I, F = config.dit.head_dim, config.dit.intermediate_size, config.dit.timestep_dim
    keys: dict[str, tuple[int, ...]] = {}
    for i in range(config.dit.num_layers):
        p = f"dit.layers.{i}."
        keys.update({
            p + "attn.qkv_proj.weight": (3 * D, D), p + "attn.qkv_proj.bias": (3 * D,),
            p + "attn.o_proj.weight": (D, D),
            p + "attn.q_norm.weight": (h,), p + "attn.k_norm.weight": (h,),
            p + "mlp.gate_proj.weight": (I, D), p + "mlp.up_proj.weight": (I, D),
            p + "mlp.down_proj.weight": (D, I),
            p + "input_layernorm.weight": (D,), p + "middle_layernorm.weight": (D,),
            p + "post_layernorm.weight": (D,), p + "final_layernorm.weight": (D,),
            p + "adaln_table": (6, D),
        })
    keys.update({
        "state_projector.layers.0.weight": (D, S), "state_projector.layers.2.weight": (D, D),
        "action_projector.layers.0.weight": (D, A), "action_projector.layers.2.weight": (D, D),
        "action_output_layer.layers.0.weight": (A, D),
        "action_output_layer.layers.2.weight": (A, A),
        "t_embedder.mlp.0.weight": (D, F), "t_embedder.mlp.2.weight": (D, D),
        "t_projector.layers.0.weight": (6 * D, D), "t_projector.layers.0.bias": (6 * D,),
        "sink.weight": (1, D),
    })
    return keys


def tied_keys(config: XR0Config) -> dict[str, str]:
    """alias -> stored key for weights the released layout does not store."""
    return dict(TIED_KEYS) if config.vlm.tie_word_embeddings else {}


def checkpoint_keys(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """Key -> shape of everything a released checkpoint of this model stores (its state dict
    less tied aliases). Works on a `meta` model, so the full preset costs no memory."""
    tied = tied_keys(model.config)
    return {k: tuple(v.shape) for k, v in model.state_dict().items() if k not in tied}


# ---------------------------------------------------------------------------------------------
# Locating and indexing files
# ---------------------------------------------------------------------------------------------

def _hub_reachable(endpoint: str, timeout: float) -> bool:
    url = urlparse(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


def _download(repo_id: str, timeout: float = 3.0) -> Path:
    """A hub snapshot: a cached copy if there is one, else a download when the hub answers.
    Never waits on an unreachable network for more than `timeout` seconds."""
    try:
        from huggingface_hub import constants, snapshot_download
    except ImportError as err:
        raise CheckpointNotFoundError(
            f"{repo_id!r} is not a local directory, and huggingface_hub (needed to download it "
            "from the Hub) is not installed") from err
    with contextlib.suppress(Exception):  # no cached snapshot: fall through to the network
        return Path(snapshot_download(repo_id, allow_patterns=_HUB_PATTERNS, local_files_only=True))
    offline = constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").lower() in (
        "1", "true", "yes", "on")
    if offline:
        raise CheckpointNotFoundError(
            f"{repo_id!r} is not a local directory and the Hugging Face Hub is disabled "
            "(HF_HUB_OFFLINE is set) with no cached snapshot; pass a local checkpoint directory")
    if not _hub_reachable(constants.ENDPOINT, timeout):
        raise CheckpointNotFoundError(
            f"{repo_id!r} is not a local directory and the Hugging Face Hub ({constants.ENDPOINT}) "
            "cannot be reached (offline?); download the checkpoint elsewhere and pass its local "
            "directory")
    return Path(snapshot_download(repo_id, allow_patterns=_HUB_PATTERNS))


def resolve_checkpoint_dir(path: str | os.PathLike) -> Path:
    """A local checkpoint directory; a hub id ("Org/Name", not a local path) is downloaded only
    when the hub is reachable."""
    local = Path(path).expanduser()
    if local.is_dir():
        return local
    if local.exists():
        raise CheckpointError(f"{local} is a file; pass the checkpoint directory that holds "
                              f"{CONFIG_NAME} and the weights")
    text = os.fspath(path)
    if isinstance(path, str) and _HUB_ID_RE.match(text):
        return _download(text)
    raise CheckpointNotFoundError(f"checkpoint directory {local} does not exist")


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    file: Path
    shape: tuple[int, ...]
    dtype: str  # safetensors dtype name, e.g. "BF16"


def weight_files(directory: Path) -> tuple[list[Path], dict[str, str] | None]:
    """The safetensors files of a checkpoint and the index's weight_map (None when the weights
    are one unsharded model.safetensors)."""
    index, single = directory / INDEX_NAME, directory / WEIGHTS_NAME
    if index.is_file() and single.is_file():
        raise CheckpointError(f"{directory} holds both {INDEX_NAME} and {WEIGHTS_NAME}; it is "
                              "unclear which weights are meant, remove one")
    if single.is_file():
        return [single], None
    if not index.is_file():
        found = sorted(p.name for p in directory.glob("*.safetensors"))
        bins = sorted(p.name for p in directory.glob("*.bin"))
        hint = (f" (found {found} without an index)" if found else
                f" (found {bins}: only safetensors are read)" if bins else "")
        raise CheckpointNotFoundError(f"{directory} has no {WEIGHTS_NAME} or {INDEX_NAME}{hint}")
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise CheckpointError(f"{index} is not a safetensors index with a weight_map: "
                              f"{err}") from err
    names = sorted(set(weight_map.values()))
    missing = [n for n in names if not (directory / n).is_file()]
    if missing:
        raise CheckpointNotFoundError(f"{index} names shard files that are not in {directory}: "
                                      f"{missing}")
    return [directory / n for n in names], weight_map


def read_tensor_index(directory: Path) -> dict[str, TensorInfo]:
    """Key -> file, shape, dtype from the safetensors headers alone (no tensor data read)."""
    from safetensors import safe_open

    files, weight_map = weight_files(directory)
    infos: dict[str, TensorInfo] = {}
    duplicates = []
    for file in files:
        with safe_open(file, framework="pt") as f:
            for key in f.keys():
                sl = f.get_slice(key)
                if key in infos:
                    duplicates.append(key)
                infos[key] = TensorInfo(file, tuple(sl.get_shape()), sl.get_dtype())
    if duplicates:
        raise CheckpointError(f"keys stored in more than one shard: {duplicates[:_SHOW]}")
    if weight_map is not None:
        # The index must describe the files: a stale index silently dropping keys is a classic.
        wrong = [k for k, n in weight_map.items() if k not in infos or infos[k].file.name != n]
        unlisted = [k for k in infos if k not in weight_map]
        if wrong or unlisted:
            raise CheckpointError(f"{directory / INDEX_NAME} disagrees with the shard files: "
                                  f"{len(wrong)} keys mapped to a file that lacks them "
                                  f"{wrong[:_SHOW]}, {len(unlisted)} keys in shards but not in "
                                  f"the index {unlisted[:_SHOW]}")
    return infos


def _listing(label: str, items: Sequence[str]) -> str:
    more = f", ... ({len(items) - _SHOW} more)" if len(items) > _SHOW else ""
    return f"{len(items)} {label}: " + ", ".join(items[:_SHOW]) + more


def check_keys(expected: Mapping[str, tuple[int, ...]], found: Mapping[str, TensorInfo],
               where: str = "checkpoint") -> None:
    """One CheckpointError naming every missing, unexpected and misshapen key (first few of each,
    with counts); nothing when they match exactly."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    mismatched = [f"{k} {found[k].shape} != model {expected[k]}" for k in expected
                  if k in found and tuple(found[k].shape) != tuple(expected[k])]
    if not (missing or unexpected or mismatched):
        return
    parts = [_listing(label, items) for label, items in (
        ("missing keys (in the model, not in the files)", missing),
        ("unexpected keys (in the files, not in the model)", unexpected),
        ("shape mismatches", mismatched)) if items]
    raise CheckpointError(f"{where} does not match the model built from its config.json:\n  "
                          + "\n  ".join(parts))


# ---------------------------------------------------------------------------------------------
# Building without allocating, loading, saving
# ---------------------------------------------------------------------------------------------

@contextlib.contextmanager
def parameters_on_meta() -> Iterator[None]:
    """Inside, every parameter a module registers is moved to the `meta` device; buffers stay real.

    Why not `with torch.device("meta")`: that puts non-persistent buffers (Qwen3-VL's rotary
    `inv_freq`) on meta too, and they are in no checkpoint, so nothing would restore them. Here
    they are computed by the modules' own constructors, for any transformers version. A parameter
    is created by `torch.empty` (untouched, so not committed memory) and dropped at once; init
    functions then run on meta tensors and cost nothing. This patches `nn.Module` for the
    duration of the block (not thread-safe), as accelerate's `init_empty_weights` does.
    """
    original = nn.Module.register_parameter

    def register(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        original(module, name, param)
        if param is not None and param.device.type != "meta":
            module._parameters[name] = nn.Parameter(param.to("meta"),
                                                    requires_grad=param.requires_grad)

    nn.Module.register_parameter = register
    try:
        yield
    finally:
        nn.Module.register_parameter = original


def build_empty_model(config: XR0Config):
    """XR0Model with parameters on `meta` and real (CPU) buffers, ready for `assign` loading."""
    from xr0lab.model.xr0 import XR0Model

    # fork_rng: constructors draw initial values (then discarded); loading a checkpoint must not
    # move the caller's RNG, or seeded experiments would depend on whether a model was loaded.
    with torch.random.fork_rng(devices=[]), parameters_on_meta():
        model = XR0Model(config)
    return model


def _default_dtype(device: torch.device) -> torch.dtype:
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def _set_tensor(model: nn.Module, key: str, tensor: torch.Tensor) -> None:
    """Replace a parameter/buffer by `tensor` (no copy): a meta model has nothing to copy into."""
    owner, _, attr = key.rpartition(".")
    module = model.get_submodule(owner)
    if attr in module._parameters:
        old = module._parameters[attr]
        module._parameters[attr] = nn.Parameter(tensor, requires_grad=old.requires_grad)
    elif attr in module._buffers:
        module._buffers[attr] = tensor
    else:
        raise CheckpointError(f"{key} is neither a parameter nor a buffer of the model")


def load_pretrained(path: str | os.PathLike, *, dtype: torch.dtype | None = None,
                    device: str | torch.device | None = None,
                    attn_implementation: str | None = None,
                    mode: Mode | ModeConfig | None = None):
    """An `XR0Model` from a checkpoint directory in the released format, in eval mode.

    path: a local directory; a hub id ("Org/Name") only when the hub is reachable.
    device: where the weights go (default CPU). dtype: default bf16 on a GPU, float32 otherwise;
    floating parameters are cast, non-persistent buffers (rotary inv_freq) stay float32 as in a
    normally built model. mode: None = the mode xr0lab saved, else "release" (a released
    checkpoint); "xr0-async" or a ModeConfig switches it.
    Raises CheckpointNotFoundError / CheckpointError naming what is wrong.
    """
    from safetensors import safe_open

    directory = resolve_checkpoint_dir(path)
    config = read_config(directory, mode=mode,
                         attn_implementation=resolve_attn_implementation(attn_implementation))
    device = torch.device(device if device is not None else "cpu")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    dtype = dtype or _default_dtype(device)
    found = read_tensor_index(directory)
    tied = tied_keys(config)
    # Some exports store the tied head anyway; it is accepted only if it equals the embedding.
    stored_aliases = {alias: found.pop(alias) for alias in tied if alias in found}

    model = build_empty_model(config)
    expected = checkpoint_keys(model)
    check_keys(expected, found, where=str(directory))

    # Stream one shard at a time: each tensor is read (straight to `device`), cast, and becomes
    # the parameter itself, so peak memory is the model plus one tensor in the stored dtype.
    by_file: dict[Path, list[str]] = {}
    for key, info in found.items():
        by_file.setdefault(info.file, []).append(key)
    params = {name for name, _ in model.named_parameters(remove_duplicate=False)}
    for file, keys in by_file.items():
        with safe_open(file, framework="pt", device=str(device)) as f:
            for key in keys:
                tensor = f.get_tensor(key)
                if key in params and tensor.is_floating_point():
                    tensor = tensor.to(dtype)
                _set_tensor(model, key, tensor)

    for alias, target in tied.items():
        _set_tensor_alias(model, alias, target)
    for alias, info in stored_aliases.items():
        with safe_open(info.file, framework="pt", device=str(device)) as f:
            head = f.get_tensor(alias)
        embedding = model.get_parameter(tied[alias])
        if head.shape != embedding.shape or not torch.equal(head.to(dtype), embedding):
            raise CheckpointError(f"{directory} stores {alias} and it differs from {tied[alias]}, "
                                  "but config.json says tie_word_embeddings: the two cannot both "
                                  "be used")
    for module in model.modules():  # constructor-built buffers follow the weights' device
        for name, buf in module._buffers.items():
            if buf is not None and buf.device != device:
                module._buffers[name] = buf.to(device)
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()]
            if t.device.type == "meta"]
    if left:  # cannot happen after check_keys; a guard against future key-set changes
        raise CheckpointError(f"tensors left unloaded on the meta device: {left[:_SHOW]}")
    return model.eval()


def _set_tensor_alias(model: nn.Module, alias: str, target: str) -> None:
    """Re-tie: the alias becomes the very same Parameter object as the stored key."""
    owner, _, attr = alias.rpartition(".")
    model.get_submodule(owner)._parameters[attr] = model.get_parameter(target)


def parse_size(size: int | str) -> int:
    """Bytes from an int or "5GB" / "500MB" / "2GiB" (decimal and binary units, as HF)."""
    if isinstance(size, int):
        return size
    match = re.fullmatch(r"\s*([\d.]+)\s*([KMGT]i?B|B)?\s*", str(size), flags=re.IGNORECASE)
    if not match:
        raise ValueError(f"cannot parse size {size!r}; use an int (bytes) or e.g. '5GB', '500MB'")
    number, unit = float(match.group(1)), (match.group(2) or "B").upper()
    powers = {"B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
              "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
    return int(number * powers[unit])


def _shards(keys: Iterable[str], sizes: Mapping[str, int], limit: int) -> list[list[str]]:
    """Greedy in key order; a tensor larger than the limit gets a shard of its own (as HF)."""
    shards: list[list[str]] = [[]]
    used = 0
    for key in keys:
        if shards[-1] and used + sizes[key] > limit:
            shards.append([])
            used = 0
        shards[-1].append(key)
        used += sizes[key]
    return shards


def write_weights(tensors: Mapping[str, torch.Tensor], directory: str | os.PathLike, *,
                  max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE,
                  order: Sequence[str] | None = None,
                  dtype: torch.dtype | None = None) -> list[Path]:
    """Write tensors as `model.safetensors` or shards + index; returns the files written.

    order: the order keys are assigned to shards (default: the mapping's order). dtype: cast
    floating tensors on the way out, one shard at a time. Old weight files in the directory are
    removed first, so shards of a previous save cannot linger.
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    keys = list(tensors) if order is None else list(order)
    if sorted(keys) != sorted(tensors):
        raise ValueError("order must list every tensor key exactly once")
    def out_dtype(t: torch.Tensor) -> torch.dtype:
        return dtype if dtype is not None and t.is_floating_point() else t.dtype

    sizes = {k: tensors[k].numel() * out_dtype(tensors[k]).itemsize for k in keys}
    groups = _shards(keys, sizes, parse_size(max_shard_size))
    for old in [directory / WEIGHTS_NAME, directory / INDEX_NAME,
                *(p for p in directory.glob("model-*.safetensors") if _SHARD_RE.match(p.name))]:
        old.unlink(missing_ok=True)
    n = len(groups)
    names = ([WEIGHTS_NAME] if n == 1 else
             [f"model-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)])
    written = []
    for name, group in zip(names, groups):
        # One shard in host memory at a time; contiguous() because safetensors needs dense data.
        shard = {k: tensors[k].detach().to("cpu", out_dtype(tensors[k])).contiguous()
                 for k in group}
        save_file(shard, str(directory / name), metadata={"format": "pt"})
        written.append(directory / name)
    if n > 1:
        weight_map = {k: name for name, group in zip(names, groups) for k in group}
        index = {"metadata": {"total_size": sum(sizes.values())},
                 "weight_map": dict(sorted(weight_map.items()))}
        (directory / INDEX_NAME).write_text(json.dumps(index, indent=2) + "\n")
    return written


def released_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict as the released layout stores it: tied aliases dropped (after
    checking they really are tied). No copies: the tensors are the model's."""
    state = model.state_dict()
    for alias, target in tied_keys(model.config).items():
        if alias in state and state[alias].data_ptr() != state[target].data_ptr():
            raise CheckpointError(f"{alias} is not tied to {target} although the config says "
                                  "tie_word_embeddings; the released layout cannot store it")
        state.pop(alias, None)
    return state


def save_pretrained(model: nn.Module, path: str | os.PathLike, *,
                    max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE,
                    safe_serialization: bool = True, dtype: torch.dtype | None = None,
                    processor: Any = None) -> Path:
    """Write `model` in the released layout: config.json + safetensors (sharded above
    `max_shard_size`), tied lm_head not stored. dtype: cast on the way out (the release is bf16;
    default keeps the model's). processor: an `XR0Processor` to save alongside (preprocessor
    config with action_config, tokenizer files). Returns the directory."""
    if not safe_serialization:
        raise ValueError("only safetensors is written (the released format); "
                         "safe_serialization=False is not supported")
    directory = Path(path)
    state = released_state_dict(model)
    write_weights(state, directory, max_shard_size=max_shard_size, dtype=dtype)
    stored = dtype or next((v.dtype for v in state.values() if v.is_floating_point()), None)
    config = config_to_dict(model.config, torch_dtype=stored)
    (directory / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
    if processor is not None:
        processor.save_pretrained(directory)
    return directory


__all__ = [
    "CONFIG_NAME", "INDEX_NAME", "MODEL_TYPE", "TIED_KEYS", "WEIGHTS_NAME", "CheckpointError",
    "CheckpointNotFoundError", "TensorInfo", "build_empty_model", "check_keys",
    "checkpoint_keys", "config_from_dict", "config_to_dict", "dit_config_from_dict",
    "dit_config_to_dict", "expected_released_keys", "load_pretrained", "parameters_on_meta",
    "parse_size", "read_config", "read_tensor_index", "released_state_dict",
    "resolve_checkpoint_dir", "save_pretrained", "tied_keys", "vlm_config_from_dict",
    "vlm_config_to_dict", "weight_files", "write_weights",
]
