"""DynReach observations -> the tiny XR-0's inputs, fast enough to train on.

The released processor (`XR0Processor`) tokenizes the prompt and patches the image on every call.
For training, the prompt of each instruction is tokenized once (through that processor, so the
ids are the real ones) and frames are patched by `patchify`, which reproduces Qwen's image
processor for frames whose side is a multiple of 32 px (no resize); a test pins the two equal.

Axis legend: B batch, S image side in pixels, N patches, A padded action dims.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from xr0lab.dynreach.policies import normalise_state
from xr0lab.io.images import QWEN3_VL_IMAGE_SETTINGS

PROMPT_STYLE = "release-1view"


def patchify(images: np.ndarray, patch: int = 16, merge: int = 2,
             temporal: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 frames (B, S, S, 3) -> (pixel_values (B * N, 3 * temporal * patch^2), grid (B, 3)).

    What Qwen's image processor does to an image that needs no resize: scale to [0, 1], normalise
    with its mean and std, repeat the still frame `temporal` times, and order the patches so that
    each merge x merge window is contiguous.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"patchify: expected uint8 frames (B, S, S, 3), got {images.dtype} "
                         f"{images.shape}")
    b, h, w, c = images.shape
    step = patch * merge
    if h % step or w % step:
        raise ValueError(f"patchify: frame sides must be multiples of {step} px, got {h}x{w}")
    mean = np.asarray(QWEN3_VL_IMAGE_SETTINGS["image_mean"], np.float32)
    std = np.asarray(QWEN3_VL_IMAGE_SETTINGS["image_std"], np.float32)
    x = (images.astype(np.float32) / 255.0 - mean) / std                 # (B, H, W, C)
    x = x.transpose(0, 3, 1, 2)                                          # (B, C, H, W)
    gh, gw = h // patch, w // patch
    x = x.reshape(b, c, gh // merge, merge, patch, gw // merge, merge, patch)
    x = x.transpose(0, 2, 5, 3, 6, 1, 4, 7)                              # (B, h, w, m, m, C, P, P)
    x = np.broadcast_to(x[:, :, :, :, :, :, None], (*x.shape[:6], temporal, patch, patch))
    pixels = np.ascontiguousarray(x).reshape(b * gh * gw, c * temporal * patch * patch)
    grid = torch.tensor([[1, gh, gw]] * b, dtype=torch.long)
    return torch.from_numpy(pixels), grid


@lru_cache(maxsize=None)
def _prompt_ids(instruction: str, image_tokens: int, chunk_length: int) -> tuple[int, ...]:
    from xr0lab.io.examples import example_processor

    processor = example_processor(chunk_length)
    side = 32 * int(round(image_tokens ** 0.5))
    frame = np.zeros((side, side, 3), np.uint8)
    out = processor(images=[[frame]], instruction=[instruction], prompt_style=PROMPT_STYLE)
    return tuple(out["input_ids"][0].tolist())


def prompt_ids(instruction: str, image_size: int, chunk_length: int = 30) -> torch.Tensor:
    """(L,) the released one-view prompt of `instruction` with its image placeholders expanded
    for one frame of `image_size` px (real Qwen ids, from the offline processor)."""
    tokens = (image_size // 32) ** 2
    return torch.tensor(_prompt_ids(instruction, tokens, chunk_length), dtype=torch.long)


def robot_inputs(images: np.ndarray, state: np.ndarray, instructions: list[str],
                 action_dim: int = 32, chunk_length: int = 30) -> dict[str, torch.Tensor]:
    """A DynReach batch -> `XR0Model` inputs: input_ids, attention_mask, pixel_values,
    image_grid_thw, state (B, 1, A) in [-1, 1] and action_mask (B, T, A) with 2 dims on."""
    images = np.asarray(images)
    b, size = images.shape[0], images.shape[1]
    if len(instructions) != b:
        raise ValueError(f"robot_inputs: {b} frames but {len(instructions)} instructions")
    rows = [prompt_ids(i, size, chunk_length) for i in instructions]
    length = max(len(r) for r in rows)
    if any(len(r) != length for r in rows):
        raise ValueError("robot_inputs: instructions of different token lengths in one batch")
    input_ids = torch.stack(rows)
    pixel_values, grid = patchify(images)
    mask = torch.zeros(b, chunk_length, action_dim)
    mask[..., :2] = 1.0
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids),
            "pixel_values": pixel_values, "image_grid_thw": grid,
            "state": normalise_state(state, action_dim), "action_mask": mask}
