"""xr0lab: a research toolkit for Xiaomi-Robotics-0 (XR-0).

    import xr0lab
    model = xr0lab.XR0Model(xr0lab.preset("tiny"))
    inputs = xr0lab.make_example_inputs(model.config, batch_size=1, seed=0)
    actions = model.predict_actions(**inputs, seed=0)          # (B, T, 32), normalised

Heavy pieces (the model, the processor) are imported on first use, so `import xr0lab` is cheap.
"""

from importlib import import_module
from typing import Any

from xr0lab.config import (ActionConfig, ConfigError, DiTConfig, FlowConfig, ModeConfig,
                           TrainConfig, VLMConfig, XR0Config, preset)

__version__ = "0.1.0"

_LAZY = {
    "XR0Model": "xr0lab.model.xr0",
    "XR0InputError": "xr0lab.model.checks",
    "VLMContext": "xr0lab.model.vlm",
    "FlowActionExpert": "xr0lab.model.expert",
    "LossOutput": "xr0lab.model.loss",
    "FlowTrace": "xr0lab.flow",
    "integrate": "xr0lab.flow",
    "TokenLayout": "xr0lab.model.masks",
    "make_example_inputs": "xr0lab.io.examples",
    "XR0Processor": "xr0lab.io.processor",
    # transformers' AutoConfig / AutoModel / AutoProcessor for "mibot": only when called.
    "register_auto_classes": "xr0lab.io.auto",
    "ActivationCache": "xr0lab.inspect.cache",
    "HookPoint": "xr0lab.inspect.hook_points",
    "HOOK_CATALOGUE": "xr0lab.inspect.catalogue",
    "ChunkExecutor": "xr0lab.runtime",
    "ExecutorConfig": "xr0lab.runtime",
    "RealTimeRunner": "xr0lab.runtime",
    "ModelPolicy": "xr0lab.runtime",
    "load_example_model": "xr0lab.example.load",
}

__all__ = ["ActionConfig", "ConfigError", "DiTConfig", "FlowConfig", "ModeConfig", "TrainConfig",
           "VLMConfig", "XR0Config", "preset", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'xr0lab' has no attribute {name!r}")
