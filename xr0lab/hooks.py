"""Hook points: identity modules named by their attribute path from the root model.

A hook function receives `(tensor, hook)` and may return a replacement tensor. Inspection is off
by default and cheap when off: an unhooked `HookPoint` is one Python call returning its input.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

HookFn = Callable[[torch.Tensor, "HookPoint"], "torch.Tensor | None"]


class HookPoint(nn.Module):
    """Identity module. `name` is set by `name_hook_points(root)` to its path from the root."""

    def __init__(self) -> None:
        super().__init__()
        self.name: str | None = None
        self._fns: list[HookFn] = []

    @property
    def active(self) -> bool:
        return bool(self._fns)

    def add(self, fn: HookFn) -> Callable[[], None]:
        """Attach `fn`; returns a remover (idempotent)."""
        self._fns.append(fn)

        def remove() -> None:
            if fn in self._fns:
                self._fns.remove(fn)

        return remove

    def clear(self) -> None:
        self._fns.clear()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for fn in list(self._fns):
            out = fn(x, self)
            if out is not None:
                x = out
        return x

    def extra_repr(self) -> str:
        return f"name={self.name!r}"


def name_hook_points(root: nn.Module) -> dict[str, HookPoint]:
    """Name every HookPoint under `root` by its attribute path; returns {name: hook point}."""
    points = {}
    for name, module in root.named_modules():
        if isinstance(module, HookPoint):
            module.name = name
            points[name] = module
    return points
