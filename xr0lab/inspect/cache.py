"""The activation cache: {hook name: tensor}, with a leading step axis on per-step entries.

Hooks inside the denoising loop (`dit.*`, `flow.*`) fire once per network evaluation; the cache
stacks them along a leading axis. With the released Euler sampler that axis is the flow step
(N = num_steps); midpoint and Heun evaluate the network twice per step, so `dit.*` entries have
2 N rows (evaluation 2k is the one at the step's start state) while `flow.*` entries keep N.
Every other hook fires once per call and is stored as is.

    cache["dit.layers.0.attn.hook_pattern"]            # (N, B, H, S, L + S), N flow steps
    cache.at_step("dit.layers.0.attn.hook_pattern", 0)  # (B, H, S, L + S)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Iterable, Iterator

import torch

from xr0lab.inspect.catalogue import unknown_name


class ActivationCache(Mapping):
    """{hook name: tensor}, read-only. Per-step entries carry a leading step (evaluation) axis.

    `step(k)` is the cache at flow step k (per-step entries indexed, others passed through);
    `at_step(name, k)` one entry at step k. For `dit.*` entries under midpoint/Heun, step k is
    evaluation k * evaluations_per_step (the one at the step's start state).
    """

    def __init__(self, data: dict[str, torch.Tensor], *, per_step: Iterable[str] = (),
                 num_steps: int | None = None, evaluations_per_step: int = 1) -> None:
        self._data = dict(data)
        self.per_step = frozenset(n for n in per_step if n in self._data)
        self.num_steps = num_steps
        self.evaluations_per_step = evaluations_per_step

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self._data:
            raise unknown_name(name, self._data, "cached hook") if self._data else KeyError(
                f"{name!r}: the cache is empty (check names_filter)")
        return self._data[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def _index(self, name: str, k: int) -> int:
        if self.num_steps is None:
            raise ValueError("this cache has no step axis (it is already a single step)")
        if not -self.num_steps <= k < self.num_steps:
            raise IndexError(f"step {k} out of range for {self.num_steps} flow steps")
        k %= self.num_steps
        return k * self.evaluations_per_step if name.startswith("dit.") else k

    def at_step(self, name: str, k: int) -> torch.Tensor:
        """Entry `name` at flow step k (a per-step hook)."""
        x = self[name]
        if name not in self.per_step:
            raise ValueError(f"{name!r} fires once per call, not per flow step; "
                             f"use cache[{name!r}]")
        return x[self._index(name, k)]

    def step(self, k: int) -> "ActivationCache":
        """The cache at flow step k: per-step entries lose their step axis."""
        data = {n: (x[self._index(n, k)] if n in self.per_step else x)
                for n, x in self._data.items()}
        return ActivationCache(data)

    @property
    def nbytes(self) -> int:
        return sum(x.numel() * x.element_size() for x in self._data.values())

    def __repr__(self) -> str:
        rows = [f"  {n}: {tuple(x.shape)}" for n, x in self._data.items()]
        steps = "" if self.num_steps is None else f", num_steps={self.num_steps}"
        return f"ActivationCache({len(self)} entries{steps}\n" + "\n".join(rows) + "\n)"
