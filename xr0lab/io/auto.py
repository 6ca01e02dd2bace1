"""transformers' Auto classes for the "mibot" model type, mapped to xr0lab's classes.

    from xr0lab.io.auto import register_auto_classes     # or xr0lab.register_auto_classes()
    register_auto_classes()
    config = AutoConfig.from_pretrained(ckpt)             # MiBotConfig; .to_xr0_config()
    model = AutoModel.from_pretrained(ckpt, torch_dtype=torch.bfloat16)   # an XR0Model
    processor = AutoProcessor.from_pretrained(ckpt)       # an XR0Processor

Nothing registers on import, not even of this module: registering changes what transformers'
global Auto tables return for every caller in the process, so it is the caller's explicit choice.
The directory needs no remote code (no `modeling_mibot.py`). Two cases stay transformers' own:
with `trust_remote_code=True`, transformers 4.57 prefers code named by config.json's `auto_map`
(and fails when the files are absent), while 5.x prefers the registered classes; and
AutoProcessor follows a `processor_class` named in preprocessor_config.json, so a file that names
another class (e.g. "Qwen3VLProcessor") gets that class: call `XR0Processor.from_pretrained`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import PretrainedConfig

from xr0lab.config import Mode, ModeConfig, XR0Config, preset
from xr0lab.io.hf_config import (MODEL_TYPE, config_from_dict, config_to_dict,
                                 dit_config_to_dict, vlm_config_to_dict)


class MiBotConfig(PretrainedConfig):
    """config.json of an XR-0 checkpoint as a transformers config (model_type "mibot").

    It holds the released fields as they are (`vlm_config`, `dit_config`, state / action shapes;
    unknown keys such as `auto_map` or xr0lab's own `xr0lab` block are kept as attributes) and is
    checked on construction: a field xr0lab cannot represent raises `CheckpointError` by name.
    Defaults describe the full-size model (`preset("xr0")`), which transformers needs to diff
    configs when saving.
    """

    model_type = MODEL_TYPE

    def __init__(self, vlm_config: dict[str, Any] | None = None,
                 dit_config: dict[str, Any] | None = None, state_length: int = 1,
                 state_dim: int = 32, action_length: int = 30, action_dim: int = 32,
                 **kwargs: Any) -> None:
        full = preset("xr0")
        self.vlm_config = vlm_config_to_dict(full.vlm) if vlm_config is None else vlm_config
        self.dit_config = dit_config_to_dict(full.dit) if dit_config is None else dit_config
        self.state_length, self.state_dim = state_length, state_dim
        self.action_length, self.action_dim = action_length, action_dim
        super().__init__(**kwargs)
        self.to_xr0_config()  # the check: fail here, naming the field, not at model build

    def to_xr0_config(self, *, mode: Mode | ModeConfig | None = None,
                      attn_implementation: str | None = None) -> XR0Config:
        """The XR0Config this file describes (mode: as `config_from_dict`)."""
        return config_from_dict(self.to_dict(), mode=mode,
                                attn_implementation=attn_implementation,
                                name=Path(self.name_or_path).name or "pretrained")

    @classmethod
    def from_xr0_config(cls, config: XR0Config) -> "MiBotConfig":
        """The released fields of an XR0Config (what `save_pretrained` writes, less weights)."""
        return cls(**config_to_dict(config))


class XR0ModelForAuto:
    """What AutoModel maps "mibot" to; its `from_pretrained` returns an `XR0Model`.

    transformers reads a `config_class` off the class it maps (4.57 in `from_pretrained` too),
    which XR0Model, not a transformers PreTrainedModel, does not carry.
    """

    config_class = MiBotConfig

    @classmethod
    def from_pretrained(cls, path: Any, *model_args: Any, **kwargs: Any):
        from xr0lab.model.xr0 import XR0Model

        if model_args:
            raise TypeError(f"AutoModel.from_pretrained for {MODEL_TYPE!r} takes keywords only "
                            f"(see XR0Model.from_pretrained); got positional {model_args!r}")
        config = kwargs.get("config")
        # 5.x hands attn_implementation to AutoConfig, which keeps it on the config object.
        requested = getattr(config, "_attn_implementation_internal", None)
        if requested is not None and kwargs.get("attn_implementation") is None:
            kwargs["attn_implementation"] = requested
        return XR0Model.from_pretrained(path, **kwargs)


def register_auto_classes() -> None:
    """Map model_type "mibot" to xr0lab in transformers' AutoConfig, AutoModel and AutoProcessor
    (MiBotConfig, an XR0Model through XR0ModelForAuto, XR0Processor). Idempotent."""
    from transformers import AutoConfig, AutoModel, AutoProcessor

    from xr0lab.io.processor import XR0Processor

    AutoConfig.register(MODEL_TYPE, MiBotConfig, exist_ok=True)
    AutoModel.register(MiBotConfig, XR0ModelForAuto, exist_ok=True)
    AutoProcessor.register(MiBotConfig, XR0Processor, exist_ok=True)


__all__ = ["MiBotConfig", "XR0ModelForAuto", "register_auto_classes"]
