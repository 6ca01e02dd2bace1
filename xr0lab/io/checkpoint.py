"""Read and write the released XR-0 checkpoint format (docs/architecture.md §8).

A checkpoint directory holds:

    config.json                         model_type "mibot"; vlm_config (a Qwen3VLConfig dict as
                                        transformers 4.57 writes it), dit_config, state/action
                                        shapes
    model-0000i-of-0000n.safetensors    weights, keys of docs/architecture.md §3.3; the tied lm_head is not
    model.safetensors.index.json        stored (or one unsharded model.safetensors)
    preprocessor_config.json, tokenizer files   read and written by `XR0Processor`

    model = load_pretrained("/ckpt/xr0-libero", device="cuda")     # bf16 on a GPU by default
    save_pretrained(model, "/tmp/copy", max_shard_size="5GB")

Loading is strict by name and shape: every key the model has (less tied aliases) must be in the
files and nothing else may be; all problems are reported together in one `CheckpointError`, before
any tensor data is read. Weights stream shard by shard into a model whose parameters were built on
the `meta` device, so the only full copy in memory is the model itself.

The pieces: `hf_config.py` (config.json <-> XR0Config), `hub.py` (local directory or hub id),
`weights.py` (key sets, safetensors files and index, sharded writing), `errors.py`.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xr0lab.config import Mode, ModeConfig, XR0Config
from xr0lab.io.errors import CheckpointError, CheckpointNotFoundError
from xr0lab.io.hf_config import CONFIG_NAME, config_from_dict, config_to_dict
from xr0lab.io.hub import HUB_OPTIONS, hub_options, resolve_checkpoint_dir
from xr0lab.io.weights import (_SHOW, DEFAULT_MAX_SHARD_SIZE, check_keys, checkpoint_keys,
                               open_safetensors, read_tensor_index, tied_keys, write_weights)
from xr0lab.model.vlm import resolve_attn_implementation


def read_config(path: str | os.PathLike, **kwargs: Any) -> XR0Config:
    """The XR0Config of a local checkpoint directory (kwargs as `config_from_dict`)."""
    directory = resolve_checkpoint_dir(path)
    kwargs.setdefault("name", directory.name)
    return config_from_dict(_read_config_json(directory), **kwargs)


def _read_config_json(directory: Path) -> dict[str, Any]:
    file = directory / CONFIG_NAME
    if not file.is_file():
        raise CheckpointNotFoundError(f"{file} not found: a checkpoint directory needs "
                                      f"{CONFIG_NAME}")
    try:
        return json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{file} is not valid JSON: {err}") from err


# The released stack's (transformers') keyword names for load_pretrained's arguments.
RELEASED_SPELLINGS = {"torch_dtype": "dtype", "device_map": "device"}


def released_loading_kwargs(kwargs: Mapping[str, Any],
                            where: str = "XR0Model.from_pretrained") -> dict[str, Any]:
    """transformers-style from_pretrained keywords -> `load_pretrained`'s.

    torch_dtype -> dtype, device_map (one device, or "auto") -> device, an `AutoConfig` result
    (xr0lab.io.auto.MiBotConfig) -> its config.json dict; trust_remote_code and the Auto
    classes' private keywords are dropped (xr0lab runs no checkpoint code). Unknown keywords are
    refused with the list of accepted ones.
    """
    out = dict(kwargs)
    out.update(hub_options(out, where))
    for theirs, ours in RELEASED_SPELLINGS.items():
        if theirs not in out:
            continue
        value = out.pop(theirs)
        if out.get(ours) is not None and value is not None and out[ours] != value:
            raise TypeError(f"{where}: {theirs}={value!r} and {ours}={out[ours]!r} disagree; pass "
                            f"one ({ours}= is xr0lab's name)")
        if out.get(ours) is None:
            out[ours] = value
    device = out.get("device")
    if isinstance(device, Mapping):
        raise ValueError(f"{where}: device_map={device!r} splits the model across devices, which "
                         "xr0lab does not do; pass one device, e.g. device='cuda'")
    if device == "auto":
        out["device"] = "cuda" if torch.cuda.is_available() else "cpu"
    config = out.get("config")
    if config is not None and not isinstance(config, (XR0Config, Mapping)):
        if not hasattr(config, "to_dict"):
            raise TypeError(f"{where}: config must be an XR0Config, a config.json dict or the "
                            f"MiBotConfig AutoConfig returns; got {type(config).__name__}")
        out["config"] = config.to_dict()
    unknown = sorted(set(out) - set(LOAD_KEYWORDS) - set(HUB_OPTIONS))
    if unknown:
        raise TypeError(f"{where} got unexpected keyword arguments {unknown}; it takes "
                        f"{', '.join(LOAD_KEYWORDS)}, the transformers spellings "
                        f"{', '.join(f'{a} (= {b})' for a, b in RELEASED_SPELLINGS.items())}, "
                        f"trust_remote_code (ignored) and the hub options "
                        f"{', '.join(HUB_OPTIONS)}")
    return out


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


# The floating dtypes the weights may be loaded or saved in, and their usual spellings.
WEIGHT_DTYPES: dict[str, torch.dtype] = {
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
    "float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
    "float64": torch.float64, "fp64": torch.float64, "double": torch.float64,
}


def resolve_dtype(dtype: torch.dtype | str | None, name: str = "dtype") -> torch.dtype | None:
    """A weight dtype from a torch.dtype or its name ("bfloat16", "bf16", "torch.float16", ...);
    None stays None. Anything else, integer dtypes included, is refused with the choices."""
    if dtype is None:
        return None
    choices = "torch.bfloat16, torch.float16, torch.float32, torch.float64 or their names"
    if isinstance(dtype, str):
        found = WEIGHT_DTYPES.get(dtype.strip().lower().removeprefix("torch."))
        if found is None:
            raise ValueError(f"{name}={dtype!r} is not a floating dtype name; use {choices} "
                             f"({', '.join(sorted(WEIGHT_DTYPES))})")
        return found
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"{name} must be a torch.dtype or a dtype name, got "
                        f"{type(dtype).__name__} {dtype!r}")
    if dtype not in set(WEIGHT_DTYPES.values()):
        raise ValueError(f"{name}={dtype} cannot hold the model's weights (they are floating "
                         f"point and the network computes in them); use {choices}")
    return dtype


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


LOAD_KEYWORDS = ("dtype", "device", "attn_implementation", "mode", "config")


def load_pretrained(path: str | os.PathLike, *, dtype: torch.dtype | str | None = None,
                    device: str | torch.device | None = None,
                    attn_implementation: str | None = None,
                    mode: Mode | ModeConfig | None = None,
                    config: XR0Config | Mapping[str, Any] | None = None, **hub: Any):
    """An `XR0Model` from a checkpoint directory in the released format, in eval mode.

    path: a local directory; a hub id ("Org/Name") only when the hub is reachable.
    device: where the weights go (default CPU). dtype: a floating torch.dtype or its name
    ("bfloat16"), or "auto" for the dtype config.json records; default bf16 on a GPU, float32
    otherwise; floating parameters are cast, non-persistent buffers (rotary inv_freq) stay
    float32 as in a normally built model.
    mode: None = the mode xr0lab saved, else "release" (a released checkpoint); "xr0-async" or a
    ModeConfig switches it. config: instead of config.json, an XR0Config or a config.json-style
    dict (mode and attn_implementation still apply). hub: `HUB_OPTIONS` (revision, subfolder,
    ...), as in transformers. `XR0Model.from_pretrained` also takes transformers' spellings
    (`released_loading_kwargs`).
    Raises CheckpointNotFoundError / CheckpointError naming what is wrong.
    """
    unknown = sorted(set(hub) - set(HUB_OPTIONS))
    if unknown:
        raise TypeError(f"load_pretrained got unexpected keyword arguments {unknown}; it takes "
                        f"{', '.join(LOAD_KEYWORDS)} and the hub options {', '.join(HUB_OPTIONS)}")
    auto_dtype = isinstance(dtype, str) and dtype.strip().lower() == "auto"
    dtype = None if auto_dtype else resolve_dtype(dtype)
    directory = resolve_checkpoint_dir(path, **hub)
    attn = resolve_attn_implementation(attn_implementation)
    raw = _read_config_json(directory) if config is None or auto_dtype else None
    if isinstance(config, XR0Config):
        config = config.replace(
            mode=config.mode if mode is None else ModeConfig.coerce(mode),
            attn_implementation=config.attn_implementation if attn_implementation is None
            else attn)
    else:
        config = config_from_dict(raw if config is None else config, mode=mode,
                                  attn_implementation=attn, name=directory.name)
    if auto_dtype:
        stored = raw.get("torch_dtype") or raw.get("dtype")
        dtype = resolve_dtype(stored, f"{CONFIG_NAME}'s torch_dtype") if stored else None
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
        with open_safetensors(file, device=str(device)) as f:
            for key in keys:
                tensor = f.get_tensor(key)
                if key in params and tensor.is_floating_point():
                    tensor = tensor.to(dtype)
                _set_tensor(model, key, tensor)

    for alias, target in tied.items():
        _set_tensor_alias(model, alias, target)
    for alias, info in stored_aliases.items():
        with open_safetensors(info.file, device=str(device)) as f:
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
                    safe_serialization: bool = True, dtype: torch.dtype | str | None = None,
                    processor: Any = None) -> Path:
    """Write `model` in the released layout: config.json + safetensors (sharded above
    `max_shard_size`), tied lm_head not stored. dtype: cast on the way out (the release is bf16;
    default keeps the model's). processor: an `XR0Processor` to save alongside (preprocessor
    config with action_config, tokenizer files). Returns the directory."""
    if not safe_serialization:
        raise ValueError("only safetensors is written (the released format); "
                         "safe_serialization=False is not supported")
    dtype = resolve_dtype(dtype)
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
    "WEIGHT_DTYPES", "build_empty_model", "load_pretrained", "parameters_on_meta", "read_config",
    "released_state_dict", "resolve_dtype", "save_pretrained",
    "LOAD_KEYWORDS", "RELEASED_SPELLINGS", "released_loading_kwargs",
]
