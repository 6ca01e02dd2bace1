"""Checks on what `predict_actions` and `compute_loss` receive. Every failure names the argument,
what arrived and what was expected; nothing is truncated, padded or dropped silently.
"""

from __future__ import annotations

import torch

from xr0lab.config import IMAGE_PAD_ID, XR0Config


class XR0InputError(ValueError):
    """Bad model input: the message names the argument, what arrived and what was expected."""


def _shape(x: torch.Tensor) -> tuple[int, ...]:
    return tuple(x.shape)


def _tensor(name: str, x, ndim: int, hint: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise XR0InputError(f"{name} must be a torch.Tensor of shape {hint}, got {type(x).__name__}")
    if x.dim() != ndim:
        raise XR0InputError(f"{name} must have shape {hint}, got {_shape(x)}")
    return x


def _finite(name: str, x: torch.Tensor) -> None:
    if x.is_floating_point() and not torch.isfinite(x).all():
        bad = (~torch.isfinite(x)).nonzero()[0].tolist()
        raise XR0InputError(f"{name} contains NaN or inf (first at index {bad}); expected finite "
                            "values")


def check_prompt(config: XR0Config, input_ids, attention_mask, pixel_values,
                 image_grid_thw) -> int:
    """Validate the processor-format prompt; returns the batch size."""
    input_ids = _tensor("input_ids", input_ids, 2, "(B, L)")
    attention_mask = _tensor("attention_mask", attention_mask, 2, "(B, L)")
    if _shape(attention_mask) != _shape(input_ids):
        raise XR0InputError(f"attention_mask shape {_shape(attention_mask)} must equal input_ids "
                            f"shape {_shape(input_ids)}")
    if input_ids.is_floating_point():
        raise XR0InputError(f"input_ids must be integer token ids, got dtype {input_ids.dtype}")
    B = input_ids.shape[0]
    if (attention_mask.sum(-1) == 0).any():
        raise XR0InputError("attention_mask has a row with no real tokens; every prompt needs at "
                            "least one")
    n_pad = int((input_ids == IMAGE_PAD_ID).sum())
    v = config.vlm
    if pixel_values is None or image_grid_thw is None:
        if n_pad:
            raise XR0InputError(f"input_ids hold {n_pad} <|image_pad|> tokens but pixel_values/"
                                "image_grid_thw were not given")
        return B
    pixel_values = _tensor("pixel_values", pixel_values, 2,
                           "(sum of t*h*w patches, 3 * temporal_patch * patch^2)")
    image_grid_thw = _tensor("image_grid_thw", image_grid_thw, 2, "(n_images, 3)")
    patch_width = 3 * v.temporal_patch_size * v.patch_size ** 2
    if pixel_values.shape[1] != patch_width:
        raise XR0InputError(f"pixel_values must have {patch_width} features per patch "
                            f"(3 x {v.temporal_patch_size} x {v.patch_size}^2), got "
                            f"{pixel_values.shape[1]}; pass processor output, not raw images")
    if image_grid_thw.shape[1] != 3:
        raise XR0InputError(f"image_grid_thw must be (n_images, 3), got {_shape(image_grid_thw)}")
    _finite("pixel_values", pixel_values)
    n_patches = int(image_grid_thw.prod(-1).sum())
    if n_patches != pixel_values.shape[0]:
        raise XR0InputError(f"image_grid_thw describes {n_patches} patches (sum of t*h*w) but "
                            f"pixel_values has {pixel_values.shape[0]} rows")
    merge = v.spatial_merge_size ** 2
    if (image_grid_thw[:, 1:] % v.spatial_merge_size).any():
        raise XR0InputError(f"image_grid_thw h and w must be multiples of spatial_merge_size="
                            f"{v.spatial_merge_size}, got {image_grid_thw.tolist()}")
    if n_pad != n_patches // merge:
        raise XR0InputError(f"input_ids hold {n_pad} <|image_pad|> tokens but image_grid_thw "
                            f"implies {n_patches // merge} (sum t*h*w / {merge})")
    return B


def check_action_inputs(config: XR0Config, batch_size: int, state, action_mask) -> int:
    """Validate state (B, 1, state_dim) and action_mask (B, T, action_dim); returns T."""
    a = config.action
    state = _tensor("state", state, 3, f"(B, 1, {a.state_dim})")
    if state.shape[1:] != (1, a.state_dim):
        raise XR0InputError(f"state must have shape (B, 1, {a.state_dim}) (raw, zero-padded to "
                            f"{a.state_dim}), got {_shape(state)}")
    _finite("state", state)
    action_mask = _tensor("action_mask", action_mask, 3, f"(B, T, {a.action_dim})")
    if action_mask.shape[2] != a.action_dim:
        raise XR0InputError(f"action_mask must have {a.action_dim} action dims, got shape "
                            f"{_shape(action_mask)}")
    T = action_mask.shape[1]
    if not 1 <= T <= a.chunk_length:
        raise XR0InputError(f"action_mask horizon T={T} must be in [1, chunk_length="
                            f"{a.chunk_length}]")
    for name, x in (("state", state), ("action_mask", action_mask)):
        if x.shape[0] != batch_size:
            raise XR0InputError(f"{name} has batch size {x.shape[0]} but input_ids has "
                                f"{batch_size}")
    return T


def check_actions(config: XR0Config, batch_size: int, chunk_length: int, actions) -> None:
    """Validate training targets (B, T, action_dim): T is the horizon `action_mask` set."""
    shape = (batch_size, chunk_length, config.action.action_dim)
    if _shape(actions) != shape:
        raise XR0InputError(f"actions must have shape {shape} (matching action_mask), got "
                            f"{_shape(actions)}")
    _finite("actions", actions)


def check_prefix(config: XR0Config, batch_size: int, chunk_length: int, prefix,
                 prefix_length: int | None, supports_prefix: bool) -> int:
    """Validate a clean prefix (B, >= p, A) against the mode; returns p."""
    if prefix is None:
        if prefix_length:
            raise XR0InputError(f"prefix_length={prefix_length} given without a prefix tensor")
        return 0
    if not supports_prefix:
        raise XR0InputError("a prefix was given but the mode is 'release' (no prefix support); "
                            "use mode='xr0-async'")
    A = config.action.action_dim
    prefix = _tensor("prefix", prefix, 3, f"(B, p, {A})")
    p = prefix.shape[1] if prefix_length is None else int(prefix_length)
    if p < 0 or p > chunk_length:
        raise XR0InputError(f"prefix_length={p} must be in [0, chunk length {chunk_length}]")
    if prefix.shape[1] < p:
        raise XR0InputError(f"prefix has {prefix.shape[1]} steps, shorter than prefix_length={p}")
    if prefix.shape[0] != batch_size or prefix.shape[2] != A:
        raise XR0InputError(f"prefix must have shape ({batch_size}, >= {p}, {A}), got "
                            f"{_shape(prefix)}")
    _finite("prefix", prefix)
    return p
