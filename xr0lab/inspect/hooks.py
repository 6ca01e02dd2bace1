"""Hook points, temporary hooks and activation caches.

A hook point is an identity module named by its attribute path from the root model
(`dit.layers.0.attn.hook_pattern`). A hook function receives `(tensor, hook)` and may return a
replacement tensor. Inspection is off by default and cheap when off: an unhooked `HookPoint` is one
Python call returning its input, and attention scores/patterns are only materialised in layers whose
`hook_scores`/`hook_pattern` has a function attached.

    actions, cache = model.run_with_cache(**inputs, names_filter="dit.layers.*.attn.hook_pattern")
    cache["dit.layers.0.attn.hook_pattern"]            # (N, B, H, S, L + S), N flow steps
    cache.at_step("dit.layers.0.attn.hook_pattern", 0)  # (B, H, S, L + S)
    actions = model.run_with_hooks(**inputs, fwd_hooks=[("flow.hook_velocity", fn)])

Steps. Hooks inside the denoising loop (`dit.*`, `flow.*`) fire once per network evaluation; the
cache stacks them along a leading axis. With the released Euler sampler that axis is the flow step
(N = num_steps); midpoint and Heun evaluate the network twice per step, so `dit.*` entries have
2 N rows (evaluation 2k is the one at the step's start state) while `flow.*` entries keep N.
Every other hook fires once per call and is stored as is.

Filters (`names_filter`, and the names in `fwd_hooks`): an exact name, an `fnmatch` glob, a list of
names/globs, or a predicate `name -> bool`. An unknown exact name raises KeyError listing close
matches. Opt-in hooks (the expensive VLM-side ones, `vlm.*`) are selected only by filters that name
them: an exact name or a glob starting with "vlm."; `None`, predicates and other globs never pull
them in.

The catalogue of every name with its shape is `HOOK_CATALOGUE` below (the one place shapes are
documented); `hook_catalogue(model)` expands it for a model and is checked against
`model.hook_points` in the tests.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence, Union

import torch
from torch import nn
from torch.nn.modules import module as _torch_module

HookFn = Callable[[torch.Tensor, "HookPoint"], "torch.Tensor | None"]
NamesFilter = Union[None, str, Sequence[str], Callable[[str], bool]]


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


# -- the catalogue -------------------------------------------------------------------------------
# Axes: B batch, L prompt length, T chunk length, S = 2 + T DiT tokens, D DiT width, H DiT query
# heads, K kv heads, h head dim, A action dims, d VLM width, Hv VLM query heads, N flow steps.
# {i} = DiT layer, {j} = VLM layer. Shapes are per firing; per-step hooks gain a leading N axis in
# a cache.


@dataclass(frozen=True)
class HookInfo:
    shape: str
    doc: str
    per_step: bool = False  # fires inside the denoising loop
    opt_in: bool = False  # expensive; only attached when named explicitly (VLM side)


_L = "dit.layers.{i}."
_VL = "vlm.model.language_model.layers.{j}."
HOOK_CATALOGUE: dict[str, HookInfo] = {
    # DiT attention (per network evaluation)
    _L + "attn.hook_q": HookInfo("(B, H, S, h)", "queries after q_norm and RoPE", True),
    _L + "attn.hook_k": HookInfo("(B, H, S, h)", "DiT keys after k_norm and RoPE", True),
    _L + "attn.hook_v": HookInfo("(B, H, S, h)", "DiT values", True),
    _L + "attn.hook_vlm_k": HookInfo("(B, K, L, h)", "paired VLM layer's cached keys", True),
    _L + "attn.hook_vlm_v": HookInfo("(B, K, L, h)", "paired VLM layer's cached values", True),
    _L + "attn.hook_scores": HookInfo(
        "(B, H, S, L + S)", "scaled scores, -inf where masked; switches the layer to the explicit "
        "attention path", True),
    _L + "attn.hook_pattern": HookInfo(
        "(B, H, S, L + S)", "softmax of the scores; switches the layer to the explicit path", True),
    _L + "attn.hook_z": HookInfo("(B, S, H, h)", "attention-weighted values before o_proj", True),
    # DiT layer: adaLN modulation and residual stream
    **{_L + f"hook_{m}": HookInfo("(B, 1, D)", f"adaLN {m.replace('_', ' ')} (table + t_emb)",
                                  True)
       for m in ("shift_attn", "scale_attn", "gate_attn", "shift_mlp", "scale_mlp", "gate_mlp")},
    _L + "hook_resid_pre": HookInfo("(B, S, D)", "residual stream entering the layer", True),
    _L + "hook_attn_out": HookInfo("(B, S, D)", "attention output (after o_proj, before gate)",
                                   True),
    _L + "hook_resid_mid": HookInfo("(B, S, D)", "residual after middle_layernorm", True),
    _L + "hook_mlp_out": HookInfo("(B, S, D)", "MLP output (before gate)", True),
    _L + "hook_resid_post": HookInfo("(B, S, D)", "residual after final_layernorm", True),
    # the integrator (once per flow step, whatever the integrator)
    "flow.hook_t": HookInfo("(B,)", "flow time of the step, t = 0 noise", True),
    "flow.hook_x_t": HookInfo("(B, T, A)", "state entering the step", True),
    "flow.hook_velocity": HookInfo("(B, T, A)", "velocity at x_t (0 on the prefix)", True),
    "flow.hook_clean_estimate": HookInfo("(B, T, A)", "one-step estimate x_t + (1 - t) v", True),
    "flow.hook_x_next": HookInfo("(B, T, A)", "state after the step", True),
    # once per call
    "hook_dit_positions": HookInfo("(3, B, S)", "DiT M-RoPE positions in use"),
    "hook_dit_mask": HookInfo("(B, S, L + S)", "bool DiT attention mask in use, True = may attend"),
    "hook_actions": HookInfo("(B, T, A)", "final normalised actions"),
    "hook_prompt_positions": HookInfo("(3, B, L)", "prompt M-RoPE ids (XR0Model only)"),
    "hook_prompt_mask": HookInfo("(B, L)", "bool, True at real prompt tokens (XR0Model only)"),
    # opt-in, VLM side (XR0Model only): torch forward hooks on the library's modules
    _VL + "hook_resid_post": HookInfo(
        "(B, L, d)", "output of VLM decoder layer j (before Qwen3-VL's deepstack injection into "
        "the first layers)", opt_in=True),
    _VL + "self_attn.hook_pattern": HookInfo(
        "(B, Hv, L, L)", "VLM attention pattern of layer j, read-only; the text tower runs with "
        "eager attention while it is attached", opt_in=True),
}

# Integrator -> network evaluations per flow step (flow.integrate).
EVALUATIONS_PER_STEP = {"euler": 1, "midpoint": 2, "heun": 2}


def hook_catalogue(model: nn.Module) -> dict[str, HookInfo]:
    """The catalogue expanded for `model`: {name: HookInfo} for its hook points and, for models with
    a VLM, the opt-in VLM hooks."""
    n_dit = model.config.dit.num_layers
    n_vlm = model.config.vlm.num_layers if hasattr(model, "vlm") else 0
    out = {}
    for template, info in HOOK_CATALOGUE.items():
        if "{i}" in template:
            out.update({template.format(i=i): info for i in range(n_dit)})
        elif "{j}" in template:
            out.update({template.format(j=j): info for j in range(n_vlm)})
        elif template.startswith("hook_prompt") and not hasattr(model, "vlm"):
            continue
        else:
            out[template] = info
    return out


def _is_glob(s: str) -> bool:
    return any(c in s for c in "*?[")


def _unknown(name: str, known: Iterable[str], what: str = "hook") -> KeyError:
    close = difflib.get_close_matches(name, list(known), n=5, cutoff=0.6)
    hint = f"; close matches: {', '.join(close)}" if close else ""
    return KeyError(f"unknown {what} name {name!r}{hint}")


# -- activation cache ----------------------------------------------------------------------------


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
            raise _unknown(name, self._data, "cached hook") if self._data else KeyError(
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


# -- opt-in VLM hooks ----------------------------------------------------------------------------


@contextmanager
def _eager_text_attention(model: nn.Module) -> Iterator[None]:
    """Switch the VLM text tower to eager attention, the only library path that returns patterns.

    Both paths compute the same attention; the switch is on the shared text config that the layers
    and the mask builder read at forward time, and it is undone on exit, also on exceptions."""
    cfg = model.vlm.model.language_model.config
    old = cfg._attn_implementation
    cfg._attn_implementation = "eager"
    try:
        yield
    finally:
        cfg._attn_implementation = old


def _attach_opt_in(model: nn.Module, name: str, point: HookPoint, stack: ExitStack) -> None:
    """Route the library module's output through `point` with a torch forward hook."""
    path = name.rsplit(".", 1)[0]
    module = model.get_submodule(path)
    if name.endswith("hook_pattern"):
        def fwd(mod, args, out):
            weights = out[1]
            if weights is None:
                raise RuntimeError(f"{name}: the VLM returned no attention weights; the text tower "
                                   "must run with eager attention while a pattern hook is attached")
            if point(weights) is not weights:
                raise ValueError(f"{name} is read-only: the library has already used the pattern "
                                 "when the hook sees it; intervene on the context instead")
            return None
    else:
        def fwd(mod, args, out):
            # Decoder layers return a tensor in transformers 5.x and a tuple in some 4.x releases.
            if isinstance(out, tuple):
                return (point(out[0]), *out[1:])
            return point(out)
    stack.callback(module.register_forward_hook(fwd).remove)


# -- the mixin -----------------------------------------------------------------------------------


class HookedMixin:
    """`hooks`, `run_with_hooks`, `run_with_cache` and their context-level `sample_with_*` twins.

    Mixed into `FlowActionExpert` (and so `XR0Model`); needs `hook_points` and `config`.
    """

    hook_points: dict[str, HookPoint]

    def _opt_in_points(self) -> dict[str, HookPoint]:
        # Kept in __dict__, not as submodules: the VLM's module tree stays the library's.
        if "_opt_in_hook_points" not in self.__dict__:
            names = [n for n, info in self._catalogue().items() if info.opt_in]
            points = {}
            for n in names:
                points[n] = HookPoint()
                points[n].name = n
            self.__dict__["_opt_in_hook_points"] = points
        return self.__dict__["_opt_in_hook_points"]

    def _catalogue(self) -> dict[str, HookInfo]:
        if "_hook_catalogue" not in self.__dict__:
            self.__dict__["_hook_catalogue"] = hook_catalogue(self)
        return self.__dict__["_hook_catalogue"]

    def hook_names(self, *, opt_in: bool = False) -> list[str]:
        """Every hook name in attribute order; with opt_in=True also the VLM-side ones."""
        names = list(self.hook_points)
        return names + list(self._opt_in_points()) if opt_in else names

    def resolve_hook_names(self, names_filter: NamesFilter) -> list[str]:
        """The hook names a filter selects (see the module docstring for the rules)."""
        standard = list(self.hook_points)
        if names_filter is None:
            return standard
        if callable(names_filter):
            return [n for n in standard if names_filter(n)]
        specs = [names_filter] if isinstance(names_filter, str) else list(names_filter)
        opt_in = self._opt_in_points()
        chosen: dict[str, None] = {}
        for spec in specs:
            if not isinstance(spec, str):
                raise TypeError(f"names_filter entries must be strings, got {type(spec).__name__}")
            if spec in self.hook_points or spec in opt_in:
                chosen[spec] = None
            elif _is_glob(spec):
                pool = standard + list(opt_in) if spec.startswith("vlm.") else standard
                hits = fnmatch.filter(pool, spec)
                if not hits:
                    raise _unknown(spec, pool, "hook glob (matched nothing)")
                chosen.update(dict.fromkeys(hits))
            else:
                raise _unknown(spec, standard + list(opt_in))
        return list(chosen)

    def reset_hooks(self) -> None:
        """Remove every hook function, including ones added by hand with `HookPoint.add`."""
        for point in [*self.hook_points.values(), *self._opt_in_points().values()]:
            point.clear()

    @contextmanager
    def hooks(self, fwd_hooks: Sequence[tuple[NamesFilter, HookFn]] = ()) -> Iterator[Any]:
        """Attach `(filter, fn)` hooks for the duration of the block; removed on exit, also when the
        block raises. Every filter is resolved before anything is attached."""
        resolved = [(name, fn) for spec, fn in fwd_hooks for name in self.resolve_hook_names(spec)]
        opt_in = self._opt_in_points()
        with ExitStack() as stack:
            vlm_side = {n: opt_in[n] for n, _ in resolved if n in opt_in}
            if any(n.endswith("hook_pattern") for n in vlm_side):
                stack.enter_context(_eager_text_attention(self))
            for name, point in vlm_side.items():
                _attach_opt_in(self, name, point, stack)
            for name, fn in resolved:
                point = vlm_side[name] if name in vlm_side else self.hook_points[name]
                stack.callback(point.add(fn))
            yield self

    def _cache_run(self, run: Callable[[], Any], names_filter: NamesFilter, num_steps: int | None,
                   method: str) -> tuple[Any, ActivationCache]:
        names = self.resolve_hook_names(names_filter)
        store: dict[str, list[torch.Tensor]] = {n: [] for n in names}

        def save(x: torch.Tensor, hook: HookPoint) -> None:
            store[hook.name].append(x.detach())

        with self.hooks([(n, save) for n in names]):
            out = run()
        catalogue = self._catalogue()
        per_step = [n for n in names if catalogue[n].per_step]
        data = {}
        for n, xs in store.items():
            if not xs:
                continue  # never fired in this call (e.g. prompt hooks at the context level)
            data[n] = torch.stack(xs) if (n in per_step or len(xs) > 1) else xs[0]
        steps = num_steps or self.config.flow.num_steps
        cache = ActivationCache(data, per_step=per_step, num_steps=steps,
                                evaluations_per_step=EVALUATIONS_PER_STEP.get(method, 1))
        return out, cache

    def _needs_predict(self, method: str, alternative: str) -> None:
        if not hasattr(self, "predict_actions"):
            raise TypeError(f"{type(self).__name__} has no predict_actions (no VLM to prefill); "
                            f"{method} wraps it. Use {alternative}(context, ...) instead")

    def run_with_hooks(self, *args: Any, fwd_hooks: Sequence[tuple[NamesFilter, HookFn]] = (),
                       **kwargs: Any) -> Any:
        """`predict_actions(*args, **kwargs)` with temporary hooks (interventions)."""
        self._needs_predict("run_with_hooks", "sample_with_hooks")
        with self.hooks(fwd_hooks):
            return self.predict_actions(*args, **kwargs)

    def run_with_cache(self, *args: Any, names_filter: NamesFilter = None,
                       **kwargs: Any) -> tuple[Any, ActivationCache]:
        """`predict_actions(*args, **kwargs)` caching the hooks `names_filter` selects.

        Only the selected hooks are attached, so caching one layer's pattern materialises that
        layer's pattern alone. Returns (outputs, cache)."""
        self._needs_predict("run_with_cache", "sample_with_cache")
        return self._cache_run(lambda: self.predict_actions(*args, **kwargs), names_filter,
                               kwargs.get("num_steps"), kwargs.get("method", "euler"))

    def sample_with_hooks(self, context: Any, *args: Any,
                          fwd_hooks: Sequence[tuple[NamesFilter, HookFn]] = (),
                          **kwargs: Any) -> Any:
        """`sample(context, ...)` with temporary hooks: interventions against a given context."""
        with self.hooks(fwd_hooks), torch.no_grad():
            return self.sample(context, *args, **kwargs)

    def sample_with_cache(self, context: Any, *args: Any, names_filter: NamesFilter = None,
                          **kwargs: Any) -> tuple[Any, ActivationCache]:
        """`sample(context, ...)` caching the selected hooks (prompt hooks do not fire here)."""
        def run():
            with torch.no_grad():
                return self.sample(context, *args, **kwargs)
        return self._cache_run(run, names_filter, kwargs.get("num_steps"),
                               kwargs.get("method", "euler"))
