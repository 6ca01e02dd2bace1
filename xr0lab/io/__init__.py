"""Everything between a robot (or a checkpoint directory) and `XR0Model`.

Read `processor.py` first: `XR0Processor` turns observations into model inputs and model actions
into robot units, and its module docstring lists every input tensor with its shape. Then
`checkpoint.py`: `load_pretrained` / `save_pretrained` of the released checkpoint format.

    processor.py     XR0Processor: build / from_pretrained / save_pretrained, encode, __call__
    tokenizer.py     the offline Qwen3-VL tokenizer built from `qwen.tiktoken`, and its cache
    prompts.py       PROMPT_STYLES, build_prompt, build_messages, the chat template
    images.py        accepted image types, Qwen's and the post-training resize rules, the
                     released deployment's pixel budget
    action_stats.py  action width, active-dimension rule, example statistics, pad_state
    checkpoint.py    load_pretrained, save_pretrained, read_config, build_empty_model
    hf_config.py     config.json <-> XR0Config in the released (transformers 4.57) spelling
    hub.py           local directory or hub id; fails fast offline
    weights.py       released key sets, safetensors files and index, strict checks, shards
    errors.py        CheckpointError, CheckpointNotFoundError
    examples.py      synthetic camera images and valid example inputs
    fixtures.py      small checkpoint directories in the released format, for tests
    auto.py          MiBotConfig and register_auto_classes(): transformers' Auto classes for
                     "mibot" (only when called; importing registers nothing)

The main names are re-exported here, imported on first use (`from xr0lab.io import
load_pretrained`).
"""

from importlib import import_module
from typing import Any

_LAZY = {
    "XR0Processor": "xr0lab.io.processor",
    "build_prompt": "xr0lab.io.prompts",
    "load_qwen_tokenizer": "xr0lab.io.tokenizer",
    "pad_state": "xr0lab.io.action_stats",
    "load_pretrained": "xr0lab.io.checkpoint",
    "save_pretrained": "xr0lab.io.checkpoint",
    "read_config": "xr0lab.io.checkpoint",
    "CheckpointError": "xr0lab.io.errors",
    "CheckpointNotFoundError": "xr0lab.io.errors",
    "make_example_inputs": "xr0lab.io.examples",
    "synthetic_camera_image": "xr0lab.io.examples",
    "write_tiny_checkpoint": "xr0lab.io.fixtures",
    "MiBotConfig": "xr0lab.io.auto",
    "register_auto_classes": "xr0lab.io.auto",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'xr0lab.io' has no attribute {name!r}")
