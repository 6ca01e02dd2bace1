"""Synthetic, valid model inputs so notebooks and tests run with no data.

`synthetic_camera_image` draws a deterministic camera-like frame. `make_example_inputs` puts such
frames through the real offline processor (Qwen tokenizer, Qwen3-VL patching, released two-view
prompt), so what the tiny model sees is shaped exactly like a real observation.
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


def synthetic_camera_image(seed: int, height: int = 224, width: int = 224,
                           view: str = "base") -> np.ndarray:
    """A deterministic camera-like uint8 (H, W, 3) frame: wall and table, a few coloured objects
    with shadows, a vignette, sensor noise; wrist views look down at the table and show two
    gripper fingers. Different views of one seed differ; the same (seed, view) never does."""
    views = ("base", "left_wrist", "right_wrist")
    if view not in views:
        raise ValueError(f"view must be one of {views}, got {view!r}")
    if height < 8 or width < 8:
        raise ValueError(f"image size must be at least 8x8, got {height}x{width}")
    rng = np.random.default_rng([seed, views.index(view)])
    yy, xx = np.meshgrid(np.linspace(0, 1, height), np.linspace(0, 1, width), indexing="ij")
    wrist = view != "base"

    horizon = rng.uniform(-0.2, 0.05) if wrist else rng.uniform(0.3, 0.45)
    wall = rng.uniform(0.55, 0.85, 3)
    table = np.array([0.55, 0.40, 0.25]) * rng.uniform(0.8, 1.2, 3)
    img = np.empty((height, width, 3))
    on_table = yy >= horizon
    depth = np.clip((yy - horizon) / (1 - horizon), 0, 1)  # 0 far edge, 1 near edge
    grain = 0.03 * np.sin(40 * xx / (0.3 + depth) + 3 * yy)
    for c in range(3):
        img[..., c] = np.where(on_table, table[c] * (0.75 + 0.35 * depth) + grain,
                               wall[c] * (0.8 + 0.2 * yy / max(horizon, 1e-3)))

    scale = 2.0 if wrist else 1.0
    for _ in range(int(rng.integers(3, 6))):
        cy = rng.uniform(max(horizon, 0) + 0.1, 0.85)
        cx = rng.uniform(0.1, 0.9)
        ry, rx = rng.uniform(0.04, 0.09, 2) * scale * (0.6 + 0.6 * (cy - max(horizon, 0)))
        colour = rng.choice([[0.85, 0.1, 0.1], [0.1, 0.6, 0.15], [0.15, 0.3, 0.85],
                             [0.95, 0.8, 0.1], [0.9, 0.45, 0.1], [0.6, 0.2, 0.7]])
        colour = np.clip(np.asarray(colour) * rng.uniform(0.8, 1.1), 0, 1)
        shadow = ((yy - cy - 0.6 * ry) / ry) ** 2 + ((xx - cx - 0.3 * rx) / (1.3 * rx)) ** 2 <= 1
        img[shadow] *= 0.6
        if rng.random() < 0.5:  # a blob (fruit, ball, cup seen from above)
            inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
            shade = 1.0 - 0.35 * np.clip((yy - cy) / ry, -1, 1)
        else:  # a box
            inside = (np.abs(yy - cy) <= ry) & (np.abs(xx - cx) <= rx)
            shade = np.where(yy > cy + 0.5 * ry, 0.75, 1.0)
        img[inside] = (colour[None, :] * shade[inside][:, None])

    if wrist:  # two tapered grey fingers rising from the bottom edge, mirrored for the right
        mirror = 1.0 - xx if view == "right_wrist" else xx
        grey = rng.uniform(0.15, 0.3)
        for centre in (0.3, 0.7):
            half = 0.04 + 0.08 * np.clip((yy - 0.65) / 0.35, 0, 1)
            finger = (yy > 0.65) & (np.abs(mirror - centre) < half)
            img[finger] = grey * (0.8 + 0.4 * (mirror[finger] - centre + half[finger]))[:, None]

    r2 = ((yy - 0.5) ** 2 + (xx - 0.5) ** 2) / 0.5
    img *= (1.0 - 0.3 * r2)[..., None]
    img += rng.normal(0.0, 0.012, img.shape)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


@lru_cache(maxsize=4)
def example_processor(chunk_length: int, action_dim: int = 32):
    """An offline processor with one example robot type whose horizon is the chunk length.

    Images are expected at sides that are multiples of 32 (resize "none"): small frames keep the
    tiny model fast, whereas Qwen3-VL's own resize would upscale them to >= 65,536 pixels.
    """
    from xr0lab.io.action_stats import default_action_config
    from xr0lab.io.processor import XR0Processor

    stats = default_action_config({EXAMPLE_ROBOT: chunk_length}, action_dim=action_dim)
    return XR0Processor.build(stats, image_resize="none")


def make_example_inputs(config: XR0Config, batch_size: int = 1, seed: int = 0, *,
                        image_size: int = 128, num_views: int = 2) -> dict[str, torch.Tensor]:
    """A valid synthetic batch: camera-like images, the released prompt, raw state, action mask.

    Returns input_ids, attention_mask, pixel_values, image_grid_thw, state (B, 1, 32) and
    action_mask (B, T, 32) with T = config.action.chunk_length. Deterministic under `seed`.
    """
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


__all__ = ["EXAMPLE_INSTRUCTIONS", "EXAMPLE_ROBOT", "VIEWS", "example_processor",
           "make_example_inputs", "synthetic_camera_image"]
