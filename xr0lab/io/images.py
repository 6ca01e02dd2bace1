"""Camera images for Qwen3-VL: accepted image types, the resize rules and the image processor.

Sources: the Qwen3-VL release (`preprocessor_config.json`: patch 16, temporal patch 2, merge 2,
mean = std = 0.5, shortest_edge 65,536 px, longest_edge 16,777,216 px) and the released
post-training code (the 32-pixel / 90,000-pixel resize rule).
"""

from __future__ import annotations

import math
from typing import Any, Literal, Union

import numpy as np
import torch
from PIL import Image

ImageLike = Union[Image.Image, np.ndarray, torch.Tensor]
ImageResize = Literal["release", "xr0", "none"]

# Qwen3-VL-4B-Instruct's released preprocessor_config.json.
QWEN3_VL_IMAGE_SETTINGS: dict[str, Any] = {
    "size": {"shortest_edge": 65536, "longest_edge": 16777216},
    "patch_size": 16, "temporal_patch_size": 2, "merge_size": 2,
    "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
}
XR0_RESIZE_FACTOR = 32  # patch 16 x merge 2: one LLM token per 32x32 pixels
XR0_MAX_PIXELS = 90_000  # per view, post-training rule
# Smallest view the xr0 rule produces (4 visual tokens), the floor Qwen's own resize helpers use.
XR0_MIN_PIXELS = 4 * XR0_RESIZE_FACTOR**2


def make_image_processor(**overrides: Any):
    """transformers' PIL `Qwen2VLImageProcessor` with Qwen3-VL's settings (no torchvision)."""
    import transformers

    # 5.x names the PIL backend `...Pil`; in 4.x the plain class is the PIL/numpy one.
    cls = (getattr(transformers, "Qwen2VLImageProcessorPil", None)
           or transformers.Qwen2VLImageProcessor)
    settings = {**QWEN3_VL_IMAGE_SETTINGS, **overrides}
    return cls(**settings)


def smart_resize(height: int, width: int, factor: int = XR0_RESIZE_FACTOR,
                 min_pixels: int = XR0_MIN_PIXELS,
                 max_pixels: int = XR0_MAX_PIXELS) -> tuple[int, int]:
    """Qwen's resize rule: both sides multiples of `factor`, area within [min, max], aspect kept.

    >>> smart_resize(480, 640)  # a 640x480 camera under the 90,000-pixel post-training cap
    (256, 320)
    """
    if height < 1 or width < 1:
        raise ValueError(f"image size must be positive, got height={height}, width={width}")
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"aspect ratio of a {height}x{width} image exceeds 200, which Qwen "
                         "rejects")
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
    "QWEN3_VL_IMAGE_SETTINGS", "XR0_MAX_PIXELS", "XR0_MIN_PIXELS", "XR0_RESIZE_FACTOR",
    "ImageResize", "make_image_processor", "resize_for_xr0", "smart_resize", "to_pil_image",
]
