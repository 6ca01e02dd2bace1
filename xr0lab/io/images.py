"""Camera images for Qwen3-VL: accepted image types, the resize rules and the image processor.

Sources: the Qwen3-VL release (`preprocessor_config.json`: patch 16, temporal patch 2, merge 2,
mean = std = 0.5, shortest_edge 65,536 px, longest_edge 16,777,216 px), transformers 4.57.1 (what
the released XR-0 runtime pins and loads with `use_fast=False`), and the released post-training
code (the 32-pixel / 90,000-pixel resize rule).

The pixel budget of Qwen's resize ("release" vs "qwen3-vl"): under transformers 4.57.1 the slow
`Qwen2VLImageProcessor.__init__` replaces a valid `size` dict by its own defaults (the `else`
branch of its size check always runs), and only `min_pixels` / `max_pixels` keys override those.
So the released deployment resizes each view into [3,136, 1,003,520] pixels although its
`preprocessor_config.json` says [65,536, 16,777,216]. `release_pixel_budget` reproduces that
without depending on the installed library; `qwen3_vl_pixel_budget` is the file read as written.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal, Union

import numpy as np
import torch
from PIL import Image

ImageLike = Union[Image.Image, np.ndarray, torch.Tensor]
# "release": Qwen's resize at the released deployment's effective budget; "qwen3-vl": Qwen's resize
# at the budget preprocessor_config.json states (xr0lab's rule before it matched the release);
# "xr0": the post-training rule; "none": sides must already be multiples of 32.
ImageResize = Literal["release", "qwen3-vl", "xr0", "none"]
PixelBudget = tuple[int, int]  # (min_pixels, max_pixels) per image

# Qwen3-VL-4B-Instruct's released preprocessor_config.json.
QWEN3_VL_IMAGE_SETTINGS: dict[str, Any] = {
    "size": {"shortest_edge": 65536, "longest_edge": 16777216},
    "patch_size": 16, "temporal_patch_size": 2, "merge_size": 2,
    "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
}
XR0_RESIZE_FACTOR = 32  # patch 16 x merge 2: one LLM token per 32x32 pixels
# transformers 4.57.1's Qwen2VLImageProcessor defaults (56 * 56, 28 * 28 * 1280), which its
# constructor puts in place of any `size` dict (module docstring).
RELEASE_MIN_PIXELS = 3_136
RELEASE_MAX_PIXELS = 1_003_520
XR0_MAX_PIXELS = 90_000  # per view, post-training rule
# Smallest view the xr0 rule produces (4 visual tokens), the floor Qwen's own resize helpers use.
XR0_MIN_PIXELS = 4 * XR0_RESIZE_FACTOR**2
MAX_ASPECT_RATIO = 200  # longest over shortest side; Qwen's own smart_resize refuses more


def make_image_processor(**overrides: Any):
    """transformers' PIL `Qwen2VLImageProcessor` with Qwen3-VL's settings (no torchvision)."""
    import transformers

    # 5.x names the PIL backend `...Pil`; in 4.x the plain class is the PIL/numpy one.
    cls = (getattr(transformers, "Qwen2VLImageProcessorPil", None)
           or transformers.Qwen2VLImageProcessor)
    settings = {**QWEN3_VL_IMAGE_SETTINGS, **overrides}
    return cls(**settings)


def check_image_size(image: Image.Image, name: str = "image", resize: str = "release") -> None:
    """Reject, naming the image, sizes that cannot become visual tokens: an empty image (0
    tokens, so the prompt would carry a view with nothing in it), and under every resize but
    "none" an aspect ratio above Qwen's limit (which Qwen reports without the image)."""
    h, w = image.height, image.width
    if h < 1 or w < 1:
        raise ValueError(f"{name} is {h}x{w} (height x width): an empty image gives no visual "
                         "tokens; every view needs a real camera frame")
    if resize != "none" and max(h, w) / min(h, w) > MAX_ASPECT_RATIO:
        raise ValueError(f"{name} is {h}x{w} (height x width): its aspect ratio "
                         f"{max(h, w) / min(h, w):.1f} exceeds {MAX_ASPECT_RATIO}, which "
                         "Qwen3-VL's resize rejects; crop or pad it first")


def release_pixel_budget(config: Mapping[str, Any] | None = None) -> PixelBudget:
    """The budget transformers 4.57.1's slow processor applies for a preprocessor_config.json:
    its defaults, each replaced by `min_pixels` / `max_pixels` when the file has that key.

    >>> release_pixel_budget({"size": {"shortest_edge": 65536, "longest_edge": 16777216}})
    (3136, 1003520)
    >>> release_pixel_budget({"min_pixels": 65536, "max_pixels": 16777216})
    (65536, 16777216)
    """
    config = config or {}
    lo, hi = config.get("min_pixels"), config.get("max_pixels")
    return check_pixel_budget((RELEASE_MIN_PIXELS if lo is None else int(lo),
                          RELEASE_MAX_PIXELS if hi is None else int(hi)), "release")


def qwen3_vl_pixel_budget(config: Mapping[str, Any] | None = None) -> PixelBudget:
    """The budget a preprocessor_config.json states: `size` (Qwen3-VL's when absent), with
    `min_pixels` / `max_pixels` winning over it as in every transformers version.

    >>> qwen3_vl_pixel_budget({})
    (65536, 16777216)
    """
    config = config or {}
    size = dict(config.get("size") or QWEN3_VL_IMAGE_SETTINGS["size"])
    lo = config.get("min_pixels", size.get("shortest_edge"))
    hi = config.get("max_pixels", size.get("longest_edge"))
    if lo is None or hi is None:
        raise ValueError(f"preprocessor_config.json: size must hold shortest_edge and "
                         f"longest_edge (pixel counts); got {size}")
    return check_pixel_budget((int(lo), int(hi)), "qwen3-vl")


def check_pixel_budget(budget: PixelBudget, rule: str) -> PixelBudget:
    """(min_pixels, max_pixels) as ints, or a ValueError naming the rule."""
    lo, hi = (int(v) for v in budget)
    if not 1 <= lo <= hi:
        raise ValueError(f"the {rule} pixel budget must satisfy 1 <= min_pixels <= max_pixels; "
                         f"got min_pixels={lo}, max_pixels={hi}")
    return lo, hi


def smart_resize(height: int, width: int, factor: int = XR0_RESIZE_FACTOR,
                 min_pixels: int = XR0_MIN_PIXELS,
                 max_pixels: int = XR0_MAX_PIXELS) -> tuple[int, int]:
    """Qwen's resize rule: both sides multiples of `factor`, area within [min, max], aspect kept.

    >>> smart_resize(480, 640)  # a 640x480 camera under the 90,000-pixel post-training cap
    (256, 320)
    """
    if height < 1 or width < 1:
        raise ValueError(f"image size must be positive, got height={height}, width={width}")
    if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
        raise ValueError(f"aspect ratio of a {height}x{width} image exceeds {MAX_ASPECT_RATIO}, "
                         "which Qwen rejects")
    h = max(factor, round(height / factor) * factor)
    w = max(factor, round(width / factor) * factor)
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h = max(factor, math.floor(height / beta / factor) * factor)
        w = max(factor, math.floor(width / beta / factor) * factor)
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h = math.ceil(height * beta / factor) * factor
        w = math.ceil(width * beta / factor) * factor
    return h, w


def resize_for_xr0(image: Image.Image, max_pixels: int = XR0_MAX_PIXELS,
                   factor: int = XR0_RESIZE_FACTOR) -> Image.Image:
    """The post-training rule: each view to multiples of 32 and at most `max_pixels` pixels."""
    h, w = smart_resize(image.height, image.width, factor=factor, max_pixels=max_pixels,
                        min_pixels=min(XR0_MIN_PIXELS, max_pixels))
    if (h, w) == (image.height, image.width):
        return image
    return image.resize((w, h), resample=Image.Resampling.BICUBIC)


def to_pil_image(image: Any, name: str = "image") -> Image.Image:
    """Accept PIL images, uint8 (H, W, 3) numpy arrays, or (3, H, W) torch tensors.

    Float tensors must hold values in [0, 1]; they are rounded to 8 bits (cameras deliver 8-bit
    frames and the released pipeline starts from PIL images).
    """
    if isinstance(image, Image.Image):
        return image.convert("RGB") if image.mode != "RGB" else image
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
            raise ValueError(f"{name}: numpy images must be uint8 with shape (H, W, 3); got dtype "
                             f"{image.dtype} and shape {tuple(image.shape)}")
        return Image.fromarray(np.ascontiguousarray(image), mode="RGB")
    if isinstance(image, torch.Tensor):
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"{name}: torch images must have shape (3, H, W); got shape "
                             f"{tuple(image.shape)}")
        t = image.detach().cpu()
        if t.dtype == torch.uint8:
            array = t.permute(1, 2, 0).numpy()
        elif t.is_floating_point():
            if t.numel() == 0:
                raise ValueError(f"{name} is {t.shape[1]}x{t.shape[2]} (height x width): an "
                                 "empty image gives no visual tokens; every view needs a real "
                                 "camera frame")
            lo, hi = float(t.min()), float(t.max())
            if not (math.isfinite(lo) and math.isfinite(hi)) or lo < 0.0 or hi > 1.0:
                raise ValueError(f"{name}: float image tensors must hold values in [0, 1]; got "
                                 f"range [{lo}, {hi}]")
            array = (t.float() * 255.0).round().to(torch.uint8).permute(1, 2, 0).numpy()
        else:
            raise ValueError(f"{name}: torch images must be uint8 or floating point; got {t.dtype}")
        return Image.fromarray(np.ascontiguousarray(array), mode="RGB")
    raise TypeError(f"{name}: expected a PIL image, a uint8 numpy array (H, W, 3) or a torch "
                    f"tensor (3, H, W); got {type(image).__name__}")


__all__ = [
    "MAX_ASPECT_RATIO", "QWEN3_VL_IMAGE_SETTINGS", "XR0_MAX_PIXELS", "XR0_MIN_PIXELS",
    "XR0_RESIZE_FACTOR", "ImageResize", "check_image_size", "make_image_processor",
    "resize_for_xr0", "smart_resize", "to_pil_image",
    "RELEASE_MAX_PIXELS", "RELEASE_MIN_PIXELS", "PixelBudget", "check_pixel_budget",
    "qwen3_vl_pixel_budget", "release_pixel_budget",
]
