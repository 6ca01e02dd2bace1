"""Hook points: identity modules, named by their attribute path from the root model.

A hook point sits wherever the model exposes an activation (`dit.layers.0.attn.hook_pattern`). A
hook function receives `(tensor, hook)` and may return a replacement tensor. Inspection is off by
default and cheap when off: an unhooked `HookPoint` is one Python call returning its input, and
attention scores/patterns are only materialised in layers whose `hook_scores`/`hook_pattern` has a
function attached.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.nn.modules import module as _torch_module

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
                if out is not x:
                    self._check_replacement(fn, x, out)
                x = out
        return x

    def _check_replacement(self, fn: HookFn, x: torch.Tensor, out: object) -> None:
        """A replacement must stand in for the activation exactly: otherwise the model fails
        several calls later, in an error that names neither the hook point nor the function."""
        where = self.name or "an unnamed hook point"
        who = f"hook {getattr(fn, '__qualname__', repr(fn))} at {where}"
        wanted = f"shape {tuple(x.shape)}, dtype {x.dtype}, device {x.device}"
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"{who} returned {type(out).__name__}; a hook returns None (observe) "
                            f"or a torch.Tensor like its input ({wanted})")
        if out.shape != x.shape or out.dtype != x.dtype or out.device != x.device:
            raise ValueError(f"{who} returned a tensor of shape {tuple(out.shape)}, dtype "
                             f"{out.dtype}, device {out.device}; a replacement must match its "
                             f"input: {wanted}")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        # nn.Module.__call__ costs microseconds per call and there are ~80 hook points per DiT
        # step: skip it unless a torch-level hook (e.g. a profiler's) is registered here.
        if self._forward_hooks or self._forward_pre_hooks or _has_global_module_hooks():
            return super().__call__(x)
        return self.forward(x) if self._fns else x

    def extra_repr(self) -> str:
        return f"name={self.name!r}"


def _has_global_module_hooks() -> bool:
    # Read through the module at call time: torch registers global hooks into these dicts. The
    # import is at module level because a function-level one costs ~0.3 us on every hook-point call.
    return bool(_torch_module._global_forward_hooks or _torch_module._global_forward_pre_hooks)


def name_hook_points(root: nn.Module) -> dict[str, HookPoint]:
    """Name every HookPoint under `root` by its attribute path; returns {name: hook point}."""
    points = {}
    for name, module in root.named_modules():
        if isinstance(module, HookPoint):
            module.name = name
            points[name] = module
    return points
