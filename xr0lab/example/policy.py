"""The trained tiny XR-0 as a DynReach chunk policy (the executor's and the evaluation's view).

`TinyPolicy` has what the DynReach evaluation reads from a tier-0 policy: `cfg.chunk_length`,
`cfg.num_steps` and `act(obs, noise, prefix=, prefix_length=)` in world units, so the same
executor, noise and metrics evaluate both tiers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from xr0lab.dynreach.instructions import VOCAB
from xr0lab.dynreach.policies import denormalise_actions, normalise_actions, pad_dims
from xr0lab.example.inputs import robot_inputs


@dataclass(frozen=True)
class PolicyShape:
    chunk_length: int
    num_steps: int


def instructions_of(tokens: np.ndarray) -> list[str]:
    """DynReach instruction token rows (B, L) -> their sentences."""
    return [" ".join(VOCAB[i] for i in row if i) for row in np.asarray(tokens)]


class TinyPolicy:
    """An `XR0Model` (the tiny preset) driving DynReach: frames through the real prompt and
    patching, the 2-D state and command in the first two of the model's 32 dims."""

    def __init__(self, model) -> None:
        self.model = model
        self.cfg = PolicyShape(model.config.action.chunk_length, model.config.flow.num_steps)

    def inputs(self, obs: dict) -> dict[str, torch.Tensor]:
        a = self.model.config.action
        return robot_inputs(obs["image"], obs["state"], instructions_of(obs["tokens"]),
                            a.action_dim, a.chunk_length)

    @torch.no_grad()
    def act(self, obs: dict, noise: torch.Tensor, *, prefix: Any = None, prefix_length: int = 0,
            num_steps: int | None = None, mode: str | None = None) -> np.ndarray:
        """One chunk (B, H, 2) in world units; `noise` (B, H, 2) fills the two active dims."""
        inputs = self.inputs(obs)
        A = self.model.config.action.action_dim
        pre = None if not prefix_length else normalise_actions(prefix, A)
        out = self.model.predict_actions(**inputs, noise=pad_dims(noise, A), prefix=pre,
                                         prefix_length=prefix_length or None,
                                         num_steps=num_steps, mode=mode)
        return denormalise_actions(out)
