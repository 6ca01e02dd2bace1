"""Checks on what `predict_actions`, `sample` and `compute_loss` receive. Every failure names the
argument, what arrived and what was expected; nothing is truncated, padded or dropped silently.
All of them run before the VLM or the DiT does, and cost a few reductions over small tensors.
"""

from __future__ import annotations

import numbers
from typing import get_args

import torch

from xr0lab.config import IMAGE_PAD_ID, XR0Config
from xr0lab.flow import Integrator

# torch.manual_seed accepts exactly this range.
_SEED_RANGE = (-0x8000_0000_0000_0000, 0xFFFF_FFFF_FFFF_FFFF)


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


def is_int(value) -> bool:
    """A Python or numpy integer; bool is not a count."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_num_steps(config: XR0Config, num_steps) -> int:
    """None -> the config's step count; otherwise an int >= 1 (checked before any network runs)."""
    if num_steps is None:
        return config.flow.num_steps
    if not is_int(num_steps) or num_steps < 1:
        raise XR0InputError(f"num_steps must be an int >= 1 (the number of flow steps), got "
                            f"{num_steps!r} ({type(num_steps).__name__})")
    return int(num_steps)


def check_method(method):
    """An integrator name of `xr0lab.flow` (checked here so a typo fails before the prefill)."""
    if method not in get_args(Integrator):
        raise XR0InputError(f"method must be one of {get_args(Integrator)} (the integrator), got "
                            f"{method!r}")
    return method


def check_seed(seed) -> None:
    if seed is None:
        return
    if not is_int(seed):
        raise XR0InputError(f"seed must be an int (or None for the global RNG), got {seed!r} "
                            f"({type(seed).__name__})")
    lo, hi = _SEED_RANGE
    if not lo <= seed <= hi:
        raise XR0InputError(f"seed must lie in [{lo}, {hi}] (torch.manual_seed's range), got "
                            f"{seed}")


def check_noise(shape: tuple[int, ...], noise, seed=None) -> None:
    """Explicit noise: exactly `shape`, floating, finite; and never together with a seed, which it
    would silently override."""
    if noise is None:
        return
    if seed is not None:
        raise XR0InputError(f"pass either seed={seed!r} or noise, not both: explicit noise would "
                            "make the seed meaningless")
    if not isinstance(noise, torch.Tensor):
        raise XR0InputError(f"noise must be a torch.Tensor of shape {shape}, got "
                            f"{type(noise).__name__}")
    if _shape(noise) != shape:
        raise XR0InputError(f"noise must have shape {shape}, got {_shape(noise)}")
    if not noise.is_floating_point():
        raise XR0InputError(f"noise must be a floating-point tensor (standard normal draws), got "
                            f"dtype {noise.dtype}")
    _finite("noise", noise)


def check_prompt(config: XR0Config, input_ids, attention_mask, pixel_values,
                 image_grid_thw) -> int:
    """Validate the processor-format prompt; returns the batch size."""
    input_ids = _tensor("input_ids", input_ids, 2, "(B, L)")
    attention_mask = _tensor("attention_mask", attention_mask, 2, "(B, L)")
    if _shape(attention_mask) != _shape(input_ids):
        raise XR0InputError(f"attention_mask shape {_shape(attention_mask)} must equal input_ids "
                            f"shape {_shape(input_ids)}")
    if input_ids.is_floating_point() or input_ids.dtype == torch.bool:
        raise XR0InputError(f"input_ids must be integer token ids, got dtype {input_ids.dtype}")
    B = input_ids.shape[0]
    vocab = config.vlm.vocab_size
    outside = (input_ids < 0) | (input_ids >= vocab)
    if input_ids.numel() and outside.any():
        where = outside.nonzero()[0].tolist()
        raise XR0InputError(f"input_ids[{where[0]}, {where[1]}] = {int(input_ids[tuple(where)])} "
                            f"is outside the vocabulary: token ids must lie in [0, vocab_size="
                            f"{vocab}); {int(outside.sum())} of {input_ids.numel()} ids are "
                            "outside")
    if (attention_mask.sum(-1) == 0).any():
        raise XR0InputError("attention_mask has a row with no real tokens; every prompt needs at "
                            "least one")
    n_pad = int((input_ids == IMAGE_PAD_ID).sum())
    v = config.vlm
    if (pixel_values is None) != (image_grid_thw is None):
        given, missing = (("pixel_values", "image_grid_thw") if image_grid_thw is None
                          else ("image_grid_thw", "pixel_values"))
        raise XR0InputError(f"{given} was given without {missing}: images need both (the "
                            "processor returns them together), or neither for a text-only prompt")
    if pixel_values is None:
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
    empty = (image_grid_thw < 1).any(-1)
    if empty.any():
        i = int(empty.nonzero()[0, 0])
        raise XR0InputError(f"image_grid_thw[{i}] = {image_grid_thw[i].tolist()}: image {i} has no "
                            "patches (a zero-size image?); every image needs t, h, w >= 1")
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


def check_action_inputs(config: XR0Config, batch_size: int, state, action_mask, *,
                        batch_from: str = "input_ids") -> int:
    """Validate state (B, 1, state_dim) and action_mask (B, T, action_dim); returns T.
    `batch_from` names where B came from, for the message."""
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
    # The mask multiplies the actions at the projector input: a fraction would scale them, and a
    # sample with no active entry would output pure noise that reads like an action chunk.
    if ((action_mask != 0) & (action_mask != 1)).any():
        values = torch.unique(action_mask[(action_mask != 0) & (action_mask != 1)])[:4].tolist()
        raise XR0InputError(f"action_mask must hold only 0 and 1 (std > 1e-5 of the robot type, "
                            f"as XR0Processor.get_action_mask gives), got values such as {values}")
    dead = ~action_mask.flatten(1).bool().any(1)
    if dead.any():
        raise XR0InputError(f"action_mask is all zero for sample(s) {dead.nonzero()[:, 0].tolist()}"
                            ": no action dim would be meaningful; expected at least one 1 per "
                            "sample")
    for name, x in (("state", state), ("action_mask", action_mask)):
        if x.shape[0] != batch_size:
            raise XR0InputError(f"{name} has batch size {x.shape[0]} but {batch_from} has "
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
        raise XR0InputError("a prefix was given but the mode is 'release' (no prefix support: "
                            "the released model was never trained with clean prefixes); use "
                            "mode='xr0-async'")
    A = config.action.action_dim
    prefix = _tensor("prefix", prefix, 3, f"(B, p, {A})")
    if prefix_length is not None and not is_int(prefix_length):
        raise XR0InputError(f"prefix_length must be an int (or None for the whole prefix), got "
                            f"{prefix_length!r} ({type(prefix_length).__name__})")
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
