"""Small checkpoint directories in the released format, for tests and notebooks (no hub needed).

    path = write_tiny_checkpoint(tmp_path / "ckpt", seed=0)
    model = XR0Model.from_pretrained(path)             # tiny preset, random weights
    processor = XR0Processor.from_pretrained(path)     # libero_all (T=10), bridge_delta (T=4)

Weights are drawn directly per key from a seeded generator (not by running the modules' init),
so a fixture is fast, reproducible across xr0lab versions, and independent of the model code
that later loads it. They are random: actions are meaningless, shapes and plumbing are real.
"""

from __future__ import annotations

import json
import math
import os
import random
from collections.abc import Mapping
from pathlib import Path

import torch

from xr0lab.config import XR0Config, preset
from xr0lab.io.checkpoint import build_empty_model
from xr0lab.io.hf_config import CONFIG_NAME, config_to_dict
from xr0lab.io.weights import checkpoint_keys, write_weights

DEFAULT_ROBOT_TYPES = {"libero_all": 10, "bridge_delta": 4}


def random_released_state_dict(config: XR0Config, seed: int = 0,
                               dtype: torch.dtype = torch.bfloat16) -> dict[str, torch.Tensor]:
    """Every key a released checkpoint of `config` stores, filled with seeded random values of a
    sensible scale: norm weights near 1, biases and embeddings small, matrices ~ 1/sqrt(fan_in)."""
    shapes = checkpoint_keys(build_empty_model(config))
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for key in sorted(shapes):  # sorted: the draw order must not depend on module order
        shape = shapes[key]
        x = torch.randn(shape, generator=gen)
        leaf = key.rsplit(".", 2)[-2] if key.count(".") else key
        if len(shape) == 1 and "norm" in leaf and key.endswith("weight"):
            x = 1.0 + 0.05 * x
        elif key.endswith("bias"):
            x = 0.02 * x
        elif "embed" in key or key == "sink.weight":
            x = 0.02 * x
        elif key.endswith("adaln_table"):
            x = x / math.sqrt(shape[-1])
        else:
            x = x / math.sqrt(math.prod(shape[1:]) or 1)
        out[key] = x.to(dtype)
    return out


def write_tiny_checkpoint(path: str | os.PathLike, *, seed: int = 0, sharded: bool = True,
                          shuffle_shards: bool = False,
                          robot_types: Mapping[str, int] | None = None,
                          config: XR0Config | None = None, dtype: torch.dtype = torch.bfloat16,
                          with_processor: bool = True) -> Path:
    """Write a checkpoint directory in the released format and return its path.

    config: default the tiny preset (release mode). dtype: stored dtype (the release is bf16).
    sharded: several `model-0000i-of-0000n.safetensors` + index, else one `model.safetensors`.
    shuffle_shards: keys are spread over the shards in a seeded random order, so shards do not
    follow module order (loaders must use the index, not assume it).
    robot_types: name -> horizon for `action_config` (each <= the chunk length); with_processor
    writes preprocessor_config.json and the tokenizer files through `XR0Processor`.
    """
    config = config or preset("tiny")
    robot_types = dict(DEFAULT_ROBOT_TYPES if robot_types is None else robot_types)
    too_long = {k: v for k, v in robot_types.items() if not 1 <= v <= config.action.chunk_length}
    if too_long:
        raise ValueError(f"robot type horizons {too_long} must lie in [1, chunk_length="
                         f"{config.action.chunk_length}]")
    directory = Path(path)
    tensors = random_released_state_dict(config, seed, dtype)
    order = list(tensors)
    if shuffle_shards:
        random.Random(seed).shuffle(order)
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    # Four-ish shards; the embedding is larger than that and gets a shard of its own.
    max_shard = max(total // 4, 1) if sharded else total + 1
    write_weights(tensors, directory, max_shard_size=max_shard, order=order)
    config_dict = config_to_dict(config, torch_dtype=dtype)
    # A released config.json has no xr0lab block: keep the fixture faithful to that.
    config_dict.pop("xr0lab")
    (directory / CONFIG_NAME).write_text(json.dumps(config_dict, indent=2) + "\n")
    if with_processor:
        from xr0lab.io.action_stats import default_action_config
        from xr0lab.io.processor import XR0Processor

        stats = default_action_config(robot_types, action_dim=config.action.action_dim, seed=seed)
        XR0Processor.build(stats).save_pretrained(directory)
    return directory


__all__ = ["DEFAULT_ROBOT_TYPES", "random_released_state_dict", "write_tiny_checkpoint"]
