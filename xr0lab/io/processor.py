"""`XR0Processor`: robot observations -> `XR0Model` inputs, and model actions -> robot units.

It holds a tokenizer (`tokenizer.py`), Qwen3-VL's image processor (`images.py`), a prompt style
(`prompts.py`) and per-robot action statistics (`action_stats.py`); this module puts them together.

Axes used below: B observations in a batch, V camera views per observation, L prompt tokens,
T action horizon of a robot type, D action/state width (32).

What the processor produces for B observations (docs/architecture.md §8):

    input_ids         (B, L) long     prompt with every image placeholder expanded, right-padded
    attention_mask    (B, L) long     0 on padding
    mm_token_type_ids (B, L) long     0 text, 1 image (transformers 5.x needs it with images)
    pixel_values      (sum t*h*w, 3 * 2 * 16 * 16) float32, all images of the batch in order
    image_grid_thw    (B * V, 3) long
    state             (B, 1, D) float32, raw (never normalised)
    action_mask       (B, T, D) float32, (std > 1e-5) of the robot type; T sets the horizon

Sources: the released inference code (prompt, `get_action_mask`, `decode_action`), the released
post-training code (the 32-pixel / 90,000-pixel resize rule), the Qwen3-VL release
(`preprocessor_config.json`) and the pixel budget transformers 4.57.1 gives it (see `images.py`).

Deliberate choice, marked where it is made: nothing is silently truncated or padded. Actions
must have exactly the robot type's horizon, states exactly D values (`pad_state` pads explicitly).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, get_args

import numpy as np
import torch
from PIL import Image

from xr0lab.config import IMAGE_PAD_ID
from xr0lab.io.action_stats import ACTION_DIM, STD_EPS, _as_float_tensor
from xr0lab.io.errors import CheckpointError, CheckpointNotFoundError
from xr0lab.io.hub import PROCESSOR_FILES, hub_options, resolve_checkpoint_dir
from xr0lab.io.images import (RELEASE_MAX_PIXELS, RELEASE_MIN_PIXELS, XR0_MAX_PIXELS,
                              XR0_RESIZE_FACTOR, ImageResize, PixelBudget, check_image_size,
                              check_pixel_budget, make_image_processor, qwen3_vl_pixel_budget,
                              release_pixel_budget, resize_for_xr0, to_pil_image)
from xr0lab.io.prompts import CHAT_TEMPLATE, _resolve_views, build_prompt
from xr0lab.io.tokenizer import PAD_TOKEN_ID, _qwen_tokenizer_class, load_qwen_tokenizer

_OWN_KEYS = ("action_config", "prompt_style", "image_resize", "xr0_max_pixels", "action_dim")


class XR0Processor:
    """Tokenizer + Qwen3-VL image processor + per-robot action statistics + prompt style.

    `XR0Processor.build(...)` assembles one offline; `from_pretrained(dir)` reads a released or
    saved checkpoint directory. Calling it turns observations into model inputs (module docstring).
    `image_resize`, how each view is resized (all keep the aspect and give multiples of 32):
    "release" = Qwen's resize at the released deployment's effective budget, `release_pixels`
    (3,136..1,003,520 pixels unless preprocessor_config.json has min_pixels / max_pixels;
    `images.py` says why); "qwen3-vl" = Qwen's resize at the budget the file states,
    `qwen3_vl_pixels` (Qwen3-VL's 65,536..16,777,216); "xr0" = the post-training rule
    (<= `xr0_max_pixels` per view); "none" = sides must already be multiples of 32.
    """

    def __init__(self, tokenizer: Any, image_processor: Any,
                 action_config: Mapping[str, Mapping[str, Any]] | None = None, *,
                 prompt_style: str = "release-2view", image_resize: ImageResize = "release",
                 xr0_max_pixels: int = XR0_MAX_PIXELS, action_dim: int = ACTION_DIM,
                 release_pixels: PixelBudget | None = None,
                 qwen3_vl_pixels: PixelBudget | None = None) -> None:
        _resolve_views(prompt_style, None)
        _check_resize(image_resize)
        if xr0_max_pixels < XR0_RESIZE_FACTOR**2:
            raise ValueError(f"xr0_max_pixels must be at least {XR0_RESIZE_FACTOR**2} (one visual "
                             f"token), got {xr0_max_pixels}")
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        # Held here, not read from image_processor.size: 4.57.1's constructor overwrites that.
        self.release_pixels = (release_pixel_budget() if release_pixels is None
                               else check_pixel_budget(release_pixels, "release"))
        self.qwen3_vl_pixels = (qwen3_vl_pixel_budget() if qwen3_vl_pixels is None
                                else check_pixel_budget(qwen3_vl_pixels, "qwen3-vl"))
        self.prompt_style = prompt_style
        self.image_resize = image_resize
        self.xr0_max_pixels = int(xr0_max_pixels)
        self.action_dim = int(action_dim)
        self._stats: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for robot_type, stats in (action_config or {}).items():
            self._stats[robot_type] = self._check_stats(robot_type, stats)

    # -- construction and persistence ---------------------------------------------------------

    @classmethod
    def build(cls, action_config: Mapping[str, Mapping[str, Any]] | None = None,
              **kwargs: Any) -> "XR0Processor":
        """Offline: cached Qwen tokenizer + Qwen3-VL image settings (+ `action_config`)."""
        return cls(load_qwen_tokenizer(), make_image_processor(), action_config, **kwargs)

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write preprocessor_config.json (image settings + action_config + xr0lab settings) and
        the tokenizer files (tokenizer.json, tokenizer_config.json, chat_template.jinja)."""
        directory = Path(directory)
        release_default = self.release_pixels == (RELEASE_MIN_PIXELS, RELEASE_MAX_PIXELS)
        if not release_default and self.qwen3_vl_pixels != self.release_pixels:
            # min_pixels / max_pixels are the only way to tell the released stack its budget, and
            # every transformers version also lets them override `size`: both cannot be kept.
            raise ValueError(f"release_pixels {self.release_pixels} differ from 4.57.1's defaults "
                             f"and from qwen3_vl_pixels {self.qwen3_vl_pixels}; the released "
                             "preprocessor_config.json format cannot hold both budgets")
        directory.mkdir(parents=True, exist_ok=True)
        config = self.image_processor.to_dict()
        for key in ("min_pixels", "max_pixels", "_processor_class"):
            config.pop(key, None)  # 4.57 writes its (overwritten) budget here too
        lo, hi = self.qwen3_vl_pixels
        config["size"] = {"shortest_edge": lo, "longest_edge": hi}
        if not release_default:
            config.update(min_pixels=self.release_pixels[0], max_pixels=self.release_pixels[1])
        config.update(action_config=self.action_config, prompt_style=self.prompt_style,
                      image_resize=self.image_resize, xr0_max_pixels=self.xr0_max_pixels,
                      action_dim=self.action_dim, processor_class=type(self).__name__)
        (directory / "preprocessor_config.json").write_text(json.dumps(config, indent=2) + "\n")
        self.tokenizer.save_pretrained(str(directory))

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, **overrides: Any) -> "XR0Processor":
        """Read a checkpoint directory in the released format (or one `save_pretrained` wrote);
        a hub id only when the hub answers, failing offline at once as `XR0Model.from_pretrained`.

        Files without xr0lab's own keys (a released checkpoint) get the defaults: prompt style
        "release-2view" and the "release" resize, whose budget is what transformers 4.57.1 makes
        of the file (`images.release_pixel_budget`). `overrides` replace any saved setting;
        transformers' loading keywords (trust_remote_code, revision, subfolder, ...) are accepted.
        """
        hub = hub_options(overrides, "XR0Processor.from_pretrained")
        directory = resolve_checkpoint_dir(directory, files=PROCESSOR_FILES, **hub)
        config_path = directory / "preprocessor_config.json"
        if not config_path.is_file():
            raise CheckpointNotFoundError(f"{config_path} not found: a processor directory needs "
                                          "preprocessor_config.json and tokenizer files")
        try:
            config = json.loads(config_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise CheckpointError(f"{config_path} is not valid JSON: {err}") from None
        if not isinstance(config, dict):
            raise CheckpointError(f"{config_path} must hold a JSON object, got "
                                  f"{type(config).__name__}")
        settings = {key: config.pop(key) for key in _OWN_KEYS if key in config}
        settings.update(overrides)
        action_config = settings.pop("action_config", None)
        for key in ("image_processor_type", "auto_map", "processor_class"):
            config.pop(key, None)
        try:
            settings.setdefault("release_pixels", release_pixel_budget(config))
            settings.setdefault("qwen3_vl_pixels", qwen3_vl_pixel_budget(config))
        except (TypeError, ValueError) as err:
            raise CheckpointError(f"{config_path}: {err}") from None
        for key in ("min_pixels", "max_pixels", "_processor_class"):
            config.pop(key, None)
        lo, hi = settings["qwen3_vl_pixels"]
        config["size"] = {"shortest_edge": lo, "longest_edge": hi}
        image_processor = make_image_processor(**config)
        if not (directory / "tokenizer.json").is_file():
            raise CheckpointNotFoundError(f"{directory / 'tokenizer.json'} not found")
        tokenizer = _qwen_tokenizer_class().from_pretrained(str(directory), local_files_only=True)
        tokenizer.padding_side = "right"
        if getattr(tokenizer, "chat_template", None) is None:
            tokenizer.chat_template = CHAT_TEMPLATE
        return cls(tokenizer, image_processor, action_config, **settings)

    # -- action statistics --------------------------------------------------------------------

    def _check_stats(self, robot_type: str,
                     stats: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(stats, Mapping) or "mean" not in stats or "std" not in stats:
            raise ValueError(f"action_config[{robot_type!r}] must be a mapping with 'mean' and "
                             "'std'")
        mean = _as_float_tensor(stats["mean"], f"action_config[{robot_type!r}]['mean']")
        std = _as_float_tensor(stats["std"], f"action_config[{robot_type!r}]['std']")
        for label, t in (("mean", mean), ("std", std)):
            if t.ndim != 2 or t.shape[0] < 1 or t.shape[1] != self.action_dim:
                raise ValueError(f"action_config[{robot_type!r}]['{label}'] must have shape "
                                 f"(T, {self.action_dim}); got {tuple(t.shape)}")
            if not torch.isfinite(t).all():
                raise ValueError(f"action_config[{robot_type!r}]['{label}'] holds NaN or inf")
        if mean.shape != std.shape:
            raise ValueError(f"action_config[{robot_type!r}]: mean {tuple(mean.shape)} and std "
                             f"{tuple(std.shape)} differ in shape")
        if (std < 0).any():
            raise ValueError(f"action_config[{robot_type!r}]['std'] has negative entries")
        return mean, std

    @property
    def action_config(self) -> dict[str, dict[str, list]]:
        """JSON-ready `{robot_type: {"mean": T x D, "std": T x D}}`."""
        return {name: {"mean": mean.tolist(), "std": std.tolist()}
                for name, (mean, std) in self._stats.items()}

    def list_robot_types(self) -> list[str]:
        return list(self._stats)

    def _lookup(self, robot_type: str) -> tuple[torch.Tensor, torch.Tensor]:
        if robot_type not in self._stats:
            available = ", ".join(self._stats) or "(none: this processor has no action_config)"
            raise KeyError(f"unknown robot_type {robot_type!r}; available: {available}")
        return self._stats[robot_type]

    def horizon(self, robot_type: str) -> int:
        """T of this robot type: the number of actions the model outputs for it."""
        return self._lookup(robot_type)[0].shape[0]

    def get_action_mask(self, robot_type: str, batch_size: int = 1) -> torch.Tensor:
        """(std > 1e-5) as float32, shape (B, T_robot, D). Its shape sets the output horizon."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        _, std = self._lookup(robot_type)
        return (std > STD_EPS).float().unsqueeze(0).expand(batch_size, -1, -1).clone()

    def _check_actions(self, actions: Any, robot_type: str):
        mean, std = self._lookup(robot_type)
        a = _as_float_tensor(actions, "actions")
        if a.ndim not in (2, 3) or tuple(a.shape[-2:]) != tuple(mean.shape):
            # Deliberately strict: a chunk of another length is never sliced or padded here.
            raise ValueError(f"actions for robot_type {robot_type!r} must have shape (B, "
                             f"{mean.shape[0]}, {mean.shape[1]}) or ({mean.shape[0]}, "
                             f"{mean.shape[1]}); got {tuple(a.shape)}")
        return a, mean.to(a.device), std.to(a.device)

    def decode_action(self, actions: Any, robot_type: str) -> torch.Tensor:
        """Normalised model output -> robot units: actions.float() * std + mean (float32)."""
        a, mean, std = self._check_actions(actions, robot_type)
        return a * std + mean

    def encode_action(self, actions: Any, robot_type: str) -> torch.Tensor:
        """Robot units -> normalised: (actions - mean) / std; inactive dims (std <= 1e-5) are 0,
        so padding dims carry no signal and `decode_action(encode_action(a))` restores every
        active dim (and sets inactive ones to their mean)."""
        a, mean, std = self._check_actions(actions, robot_type)
        active = std > STD_EPS
        return torch.where(active, (a - mean) / torch.where(active, std, torch.ones_like(std)),
                           torch.zeros_like(a))

    # -- inputs -------------------------------------------------------------------------------

    def _prepare_state(self, state: Any, batch_size: int) -> torch.Tensor:
        s = _as_float_tensor(state, "state")
        if s.ndim == 1:
            s = s[None, None]
        elif s.ndim == 2:
            s = s[:, None]
        elif s.ndim != 3 or s.shape[1] != 1:
            raise ValueError(f"state must have shape ({self.action_dim},), (B, {self.action_dim}) "
                             f"or (B, 1, {self.action_dim}); got {tuple(s.shape)}")
        if s.shape[-1] != self.action_dim:
            # Not padded here on purpose: which slots a robot's values occupy is its layout's
            # business. pad_state() zero-pads the tail explicitly.
            raise ValueError(f"state has {s.shape[-1]} values per sample; XR-0 expects exactly "
                             f"{self.action_dim}. Use xr0lab.io.action_stats.pad_state(state) to "
                             "zero-pad")
        if s.shape[0] != batch_size:
            raise ValueError(f"state has batch size {s.shape[0]} but there are {batch_size} "
                             "observations")
        if not torch.isfinite(s).all():
            raise ValueError("state holds NaN or inf values")
        return s.contiguous()

    def _prepare_images(self, images: list[list[Any]], resize: ImageResize) -> list[Image.Image]:
        flat = []
        for b, views in enumerate(images):
            for v, image in enumerate(views):
                name = f"images[{b}][{v}] (observation {b}, view {v})"
                pil = to_pil_image(image, name=name)
                check_image_size(pil, name, resize)
                if resize == "xr0":
                    pil = resize_for_xr0(pil, max_pixels=self.xr0_max_pixels)
                elif resize == "none" and (pil.height % XR0_RESIZE_FACTOR
                                           or pil.width % XR0_RESIZE_FACTOR):
                    raise ValueError(f"images[{b}][{v}] is {pil.height}x{pil.width}; with "
                                     f"image_resize='none' both sides must be multiples of "
                                     f"{XR0_RESIZE_FACTOR}")
                flat.append(pil)
        return flat

    def pixel_budget(self, rule: ImageResize | None = None) -> PixelBudget:
        """(min_pixels, max_pixels) per view that Qwen's resize uses under `rule` ("release" or
        "qwen3-vl"; default the processor's `image_resize`)."""
        rule = _check_resize(rule or self.image_resize)
        if rule == "release":
            return self.release_pixels
        if rule == "qwen3-vl":
            return self.qwen3_vl_pixels
        raise ValueError(f"image_resize {rule!r} has no pixel budget: only 'release' and "
                         "'qwen3-vl' use Qwen's resize")

    def encode(self, prompts: Sequence[str], images: Sequence[Sequence[Any]], *,
               image_resize: ImageResize | None = None) -> dict[str, torch.Tensor]:
        """Tokenize prompts (one `<|image_pad|>` per image) and expand each placeholder to the
        image's t*h*w / merge^2 tokens, as Qwen processors do. Right-pads with <|endoftext|>."""
        resize = _check_resize(image_resize or self.image_resize)
        if len(prompts) != len(images):
            raise ValueError(f"{len(prompts)} prompts but {len(images)} image lists")
        token_lists = self.tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
        for b, (ids, views) in enumerate(zip(token_lists, images)):
            if ids.count(IMAGE_PAD_ID) != len(views):
                raise ValueError(f"observation {b}: the prompt has {ids.count(IMAGE_PAD_ID)} image "
                                 f"placeholders (<|image_pad|>) but {len(views)} images were given")
        flat = self._prepare_images([list(v) for v in images], resize)
        out: dict[str, torch.Tensor] = {}
        counts: list[int] = []
        if flat:
            # Qwen resizes under "release" and "qwen3-vl", at that rule's budget given per call
            # (the image processor's own `size` is not trusted, see __init__); "xr0" has resized
            # already and "none" never resizes.
            resizing: dict[str, Any] = {"do_resize": False}
            if resize in ("release", "qwen3-vl"):
                lo, hi = self.pixel_budget(resize)
                resizing = {"do_resize": True, "size": {"shortest_edge": lo, "longest_edge": hi}}
            vision = self.image_processor(images=flat, return_tensors="pt", **resizing)
            grid = vision["image_grid_thw"].long()  # (n_images, 3)
            counts = (grid.prod(-1) // self.image_processor.merge_size**2).tolist()
            out["pixel_values"] = vision["pixel_values"]  # (sum t*h*w, 3 * 2 * 16 * 16)
            out["image_grid_thw"] = grid

        next_count = iter(counts)
        expanded = []
        for ids in token_lists:
            row: list[int] = []
            for token in ids:
                row.extend([IMAGE_PAD_ID] * next(next_count) if token == IMAGE_PAD_ID else [token])
            expanded.append(row)
        length = max(len(row) for row in expanded)
        input_ids = torch.full((len(expanded), length), PAD_TOKEN_ID, dtype=torch.long)
        attention_mask = torch.zeros((len(expanded), length), dtype=torch.long)
        for b, row in enumerate(expanded):
            input_ids[b, :len(row)] = torch.tensor(row, dtype=torch.long)
            attention_mask[b, :len(row)] = 1
        out["input_ids"] = input_ids
        out["attention_mask"] = attention_mask
        out["mm_token_type_ids"] = ((input_ids == IMAGE_PAD_ID) & attention_mask.bool()).long()
        return out

    def __call__(self, images: Any = None, instruction: str | Sequence[str] | None = None,
                 state: Any = None, robot_type: str | None = None, *,
                 text: str | Sequence[str] | None = None, prompt_style: str | None = None,
                 views: Sequence[str] | None = None, image_resize: ImageResize | None = None,
                 videos: None = None, padding: bool | str = True, return_tensors: str = "pt"):
        """Observations -> model inputs (a `transformers.BatchFeature`, so `.to(device)` works).

        One observation: `images=[base, wrist]`, `instruction="..."`. A batch: `images=[[...],
        [...]]`, `instruction=["...", "..."]`. `text=` takes finished prompts instead of an
        instruction (one `<|image_pad|>` per image); text without chat markup or placeholders is
        an instruction, as in the seed's `processor(images=..., text=instruction)`, and gets the
        prompt `instruction=` would. `state` and `robot_type` are optional; with
        them the output carries `state` (B, 1, D) and `action_mask` (B, T_robot, D).
        The released README's call `processor(text=[prompt], images=[base, wrist], videos=None,
        padding=True, return_tensors="pt")` also works: a flat image list is dealt to the prompts
        in order, by their placeholder counts. Only right padding to the longest prompt and
        torch tensors are produced.
        """
        from transformers import BatchFeature

        if videos is not None:
            raise ValueError("videos are not supported: XR-0 reads one still image per view")
        if padding not in (True, "longest"):
            raise ValueError(f"padding must be True or 'longest' (right padding to the longest "
                             f"prompt); got {padding!r}")
        if return_tensors != "pt":
            raise ValueError(f"return_tensors must be 'pt'; got {return_tensors!r}")

        if (text is None) == (instruction is None):
            raise ValueError("pass exactly one of instruction= (builds the XR-0 prompt) or text= "
                             "(finished prompts)")
        label, given = ("text", text) if text is not None else ("instruction", instruction)
        batched = not isinstance(given, str)
        if batched:
            if not isinstance(given, Sequence):
                raise TypeError(f"{label} must be a str (one observation) or a list of str (a "
                                f"batch), got {type(given).__name__} {given!r}")
            for i, item in enumerate(given):
                if not isinstance(item, str):
                    raise TypeError(f"{label}[{i}] must be a str, got {type(item).__name__} "
                                    f"{item!r}")
        if text is not None:
            finished = [_is_finished_prompt(t) for t in ([text] if not batched else text)]
            if not any(finished):
                instruction, text = text, None
            elif not all(finished):
                raise ValueError(f"text mixes finished prompts (entries {_where(finished, True)}) "
                                 f"and bare instructions (entries {_where(finished, False)}); "
                                 "pass all instructions as instruction= or all finished prompts "
                                 "as text=")
        if text is not None:
            prompts = [text] if not batched else list(text)
        else:
            instructions = [instruction] if not batched else list(instruction)
            if prompt_style is None and views is None:
                prompt_style = self.prompt_style
            prompts = [build_prompt(i, prompt_style, views=views) for i in instructions]
        if not prompts:
            raise ValueError("no observations: the instruction/text list is empty")
        observations = _as_observations(images, prompts, batched)
        out = self.encode(prompts, observations, image_resize=image_resize)
        if state is not None:
            out["state"] = self._prepare_state(state, len(prompts))
        if robot_type is not None:
            out["action_mask"] = self.get_action_mask(robot_type, len(prompts))
        return BatchFeature(data=out)

    def __repr__(self) -> str:
        budget = (f", pixels={self.pixel_budget()}"
                  if self.image_resize in ("release", "qwen3-vl") else "")
        return (f"XR0Processor(prompt_style={self.prompt_style!r}, image_resize="
                f"{self.image_resize!r}{budget}, robot_types={self.list_robot_types()})")


def _check_resize(value: str) -> ImageResize:
    if value not in get_args(ImageResize):
        raise ValueError(f"image_resize must be 'release', 'qwen3-vl', 'xr0' or 'none'; got "
                         f"{value!r}")
    return value  # type: ignore[return-value]


def _is_finished_prompt(text: str) -> bool:
    """A chat-formatted prompt or one holding image placeholders, not a bare instruction."""
    return "<|im_start|>" in text or "<|image_pad|>" in text


def _where(flags: list[bool], value: bool) -> list[int]:
    return [i for i, flag in enumerate(flags) if flag is value]


def _as_observations(images: Any, prompts: list[str], batched: bool) -> list[list[Any]]:
    """Normalise `images` to one list of views per observation."""
    if images is None:
        return [[] for _ in prompts]
    if not batched:
        if isinstance(images, (list, tuple)):
            if len(images) == 1 and isinstance(images[0], (list, tuple)):
                return [list(images[0])]
            if any(isinstance(i, (list, tuple)) for i in images):
                raise ValueError("one instruction was given but images is a nested list; pass "
                                 "a list of instructions for a batch")
            return [list(images)]
        return [[images]]
    if not isinstance(images, (list, tuple)):
        raise ValueError("for a batch, images must be a list with one list of views per "
                         "observation")
    if images and not any(isinstance(v, (list, tuple)) for v in images):
        # A flat list (transformers' convention): deal images out by placeholder counts.
        wanted = [prompt.count("<|image_pad|>") for prompt in prompts]
        if sum(wanted) != len(images):
            raise ValueError(f"the prompts hold {sum(wanted)} image placeholders (<|image_pad|>) "
                             f"in all but {len(images)} images were given")
        starts = np.cumsum([0] + wanted)
        return [list(images[a:b]) for a, b in zip(starts[:-1], starts[1:])]
    if not all(isinstance(v, (list, tuple)) for v in images):
        raise ValueError("images mixes single images and lists of views; pass one list of views "
                         "per observation")
    if len(images) != len(prompts):
        raise ValueError(f"{len(prompts)} prompts but {len(images)} image lists")
    return [list(v) for v in images]


__all__ = ["XR0Processor"]
