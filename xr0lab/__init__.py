"""xr0lab: a research toolkit for Xiaomi-Robotics-0 (XR-0)."""

from xr0lab.config import (ActionConfig, ConfigError, DiTConfig, FlowConfig, ModeConfig,
                           TrainConfig, VLMConfig, XR0Config, preset)

__version__ = "0.1.0"
