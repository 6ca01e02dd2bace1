"""Temporary hooks and caching runs on a model: `HookedMixin` (`hooks`, `run_with_hooks`,
`run_with_cache` and their context-level `sample_with_*` twins), and the opt-in VLM-side hooks.

    actions, cache = model.run_with_cache(**inputs, names_filter="dit.layers.*.attn.hook_pattern")
    actions = model.run_with_hooks(**inputs, fwd_hooks=[("flow.hook_velocity", fn)])

Filters (`names_filter`, and the names in `fwd_hooks`): an exact name, an `fnmatch` glob, a list of
names/globs, or a predicate `name -> bool`. An unknown exact name raises KeyError listing close
matches. Opt-in hooks (the expensive VLM-side ones, `vlm.*`) are selected only by filters that name
them: an exact name or a glob starting with "vlm."; `None`, predicates and other globs never pull
them in. The VLM attention-pattern hook switches the text tower to eager attention while attached.

Names and shapes are in `xr0lab.inspect.catalogue`; the step axis of a cache in
`xr0lab.inspect.cache`.
"""

from __future__ import annotations

import fnmatch
from contextlib import ExitStack, contextmanager
from typing import Any, Callable, Iterator, Sequence, Union

import torch
from torch import nn

from xr0lab.inspect.cache import ActivationCache
from xr0lab.inspect.catalogue import EVALUATIONS_PER_STEP, HookInfo, hook_catalogue, unknown_name
from xr0lab.inspect.hook_points import HookFn, HookPoint

NamesFilter = Union[None, str, Sequence[str], Callable[[str], bool]]


def _is_glob(s: str) -> bool:
    return any(c in s for c in "*?[")


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
                    raise unknown_name(spec, pool, "hook glob (matched nothing)")
                chosen.update(dict.fromkeys(hits))
            else:
                raise unknown_name(spec, standard + list(opt_in))
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
