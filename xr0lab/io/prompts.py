"""The XR-0 prompt: view titles per prompt style, the prompt string with one image placeholder
per view, the same prompt as chat messages, and the chat template that renders one into the other.

Source: the released inference code's prompt (the "release-*" styles).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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


__all__ = ["CHAT_TEMPLATE", "PROMPT_STYLES", "build_messages", "build_prompt"]
