"""The safetensors side of a checkpoint: which keys a released checkpoint stores, the weight
files and their index, strict key/shape checks, and sharded writing.

    model-0000i-of-0000n.safetensors    weights, keys of docs/architecture.md §3.3; the tied lm_head is not
    model.safetensors.index.json        stored (or one unsharded model.safetensors)

Everything here reads the safetensors headers only; no tensor data is loaded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xr0lab.config import XR0Config
from xr0lab.io.errors import CheckpointError, CheckpointNotFoundError

WEIGHTS_NAME = "model.safetensors"
INDEX_NAME = "model.safetensors.index.json"
DEFAULT_MAX_SHARD_SIZE = "5GB"
# Released layout: the output head shares the input embedding and only the embedding is stored.
TIED_KEYS = {"vlm.lm_head.weight": "vlm.model.language_model.embed_tokens.weight"}
_SHARD_RE = re.compile(r"^model-\d{5}-of-\d{5}\.safetensors$")
_SHOW = 8  # how many offending keys of each kind an error lists


# ---------------------------------------------------------------------------------------------
# Key sets
# ---------------------------------------------------------------------------------------------

def expected_released_keys(config: XR0Config) -> dict[str, tuple[int, ...]]:
    """Every non-VLM key a released checkpoint holds, with its shape, written from the table in
    docs/architecture.md §3.3 (deliberately not derived from the module code, so tests compare the two)."""
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
# Weight files and their index
# ---------------------------------------------------------------------------------------------

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


@contextlib.contextmanager
def open_safetensors(file: Path, device: str = "cpu") -> Iterator[Any]:
    """`safetensors.safe_open`, with errors that name the file: the library's own message
    ("Error while deserializing header: ...") does not say which shard is truncated or corrupt."""
    from safetensors import SafetensorError, safe_open

    try:
        handle = safe_open(file, framework="pt", device=device)
    except SafetensorError as err:
        size = file.stat().st_size if file.exists() else 0
        raise CheckpointError(f"{file} ({size} bytes) is not a readable safetensors file, "
                              f"probably truncated or corrupt (download it again): {err}") from err
    with handle as f:
        try:
            yield f
        except SafetensorError as err:
            raise CheckpointError(f"reading {file} failed, probably truncated or corrupt "
                                  f"(download it again): {err}") from err


def read_tensor_index(directory: Path) -> dict[str, TensorInfo]:
    """Key -> file, shape, dtype from the safetensors headers alone (no tensor data read)."""
    files, weight_map = weight_files(directory)
    infos: dict[str, TensorInfo] = {}
    duplicates = []
    for file in files:
        with open_safetensors(file) as f:
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
# Writing
# ---------------------------------------------------------------------------------------------

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


__all__ = [
    "DEFAULT_MAX_SHARD_SIZE", "INDEX_NAME", "TIED_KEYS", "WEIGHTS_NAME", "TensorInfo",
    "check_keys", "checkpoint_keys", "expected_released_keys", "open_safetensors", "parse_size",
    "read_tensor_index", "tied_keys", "weight_files", "write_weights",
]
