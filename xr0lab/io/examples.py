"""Synthetic, valid model inputs so notebooks and tests run with no data.

The batch goes through the real offline processor (Qwen tokenizer, Qwen3-VL patching, released
two-view prompt), so what the tiny model sees is shaped exactly like a real observation.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from xr0lab.config import XR0Config

EXAMPLE_ROBOT = "example_robot"
EXAMPLE_INSTRUCTIONS = (
    "pick up the red block and place it in the bowl",
    "open the top drawer",
    "push the blue cup to the left",
    "put the sponge on the plate",
)
VIEWS = ("base", "left_wrist")


@lru_cache(maxsize=4)
def example_processor(chunk_length: int, action_dim: int = 32):
    """An offline processor with one example robot type whose horizon is the chunk length.

    Images are expected at sides that are multiples of 32 (resize "none"): small frames keep the
    tiny model fast, whereas Qwen3-VL's own resize would upscale them to >= 65,536 pixels.
    """
    from xr0lab.io.processor import XR0Processor, default_action_config

    stats = default_action_config({EXAMPLE_ROBOT: chunk_length}, action_dim=action_dim)
    return XR0Processor.build(stats, image_resize="none")


def make_example_inputs(config: XR0Config, batch_size: int = 1, seed: int = 0, *,
                        image_size: int = 128, num_views: int = 2) -> dict[str, torch.Tensor]:
    """A valid synthetic batch: camera-like images, the released prompt, raw state, action mask.

    Returns input_ids, attention_mask, pixel_values, image_grid_thw, state (B, 1, 32) and
    action_mask (B, T, 32) with T = config.action.chunk_length. Deterministic under `seed`.
    """
    from xr0lab.io.processor import synthetic_camera_image

    if image_size % config.vlm.pixels_per_token:
        raise ValueError(f"image_size must be a multiple of {config.vlm.pixels_per_token} (one "
                         f"visual token per {config.vlm.pixels_per_token} px), got {image_size}")
    if num_views not in (1, 2):
        raise ValueError(f"num_views must be 1 or 2 (the released prompts), got {num_views}")
    processor = example_processor(config.action.chunk_length, config.action.action_dim)
    rng = np.random.default_rng(seed)
    images, instructions = [], []
    for b in range(batch_size):
        images.append([synthetic_camera_image(seed * 1000 + b, image_size, image_size, view=v)
                       for v in VIEWS[:num_views]])
        instructions.append(EXAMPLE_INSTRUCTIONS[int(rng.integers(len(EXAMPLE_INSTRUCTIONS)))])
    state = np.zeros((batch_size, 1, config.action.state_dim), dtype=np.float32)
    state[..., :7] = rng.normal(0.0, 0.5, size=(batch_size, 1, 7))  # 6-DoF pose + gripper
    out = processor(images=images, instruction=instructions, state=state, robot_type=EXAMPLE_ROBOT,
                    prompt_style="release-2view" if num_views == 2 else "release-1view")
    keep = ("input_ids", "attention_mask", "pixel_values", "image_grid_thw", "state", "action_mask")
    return {k: out[k] for k in keep}
