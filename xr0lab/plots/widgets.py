"""Interactive explorers (ipywidgets) over caches and flow traces.

Each explorer returns a widget when a frontend can show it (a Jupyter kernel not started
headless, `xr0lab.workspace.frontend.has_frontend`) and otherwise the static figure of its
initial selection: in scripts, tests and the headless runner's kernels (XR0LAB_HEADLESS=1) no
widget is created at all. `static=True` forces the figure, `static=False` the widget. ipywidgets
is imported only on the interactive path.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import torch

from xr0lab.flow import FlowTrace
from xr0lab.inspect.attention import cached_patterns
from xr0lab.model.masks import TokenLayout
from xr0lab.plots.attention import plot_attention_pattern
from xr0lab.plots.flow import plot_action_chunks
from xr0lab.workspace.frontend import has_frontend

__all__ = ["attention_explorer", "flow_explorer", "has_frontend"]


def _explore(draw: Callable[..., Any], options: Mapping[str, tuple[str, list, Any]],
             static: bool | None):
    """options: {argument: (label, choices, initial)}. Sliders for int ranges, dropdowns else."""
    initial = {name: init for name, (_, _, init) in options.items()}
    if static or (static is None and not has_frontend()):
        return draw(**initial)
    import ipywidgets as widgets
    from IPython.display import display

    controls = {}
    for name, (label, choices, init) in options.items():
        if all(isinstance(c, int) for c in choices) and choices == list(range(len(choices))):
            controls[name] = widgets.IntSlider(value=init, min=0, max=len(choices) - 1,
                                               description=label, continuous_update=False)
        else:
            controls[name] = widgets.Dropdown(options=choices, value=init, description=label)

    def show(**kwargs: Any) -> None:
        display(draw(**kwargs))

    out = widgets.interactive_output(show, controls)
    return widgets.VBox([widgets.HBox(list(controls.values())), out])


def attention_explorer(cache: Mapping[str, torch.Tensor], layout: TokenLayout, *, sample: int = 0,
                       static: bool | None = None):
    """Slider over flow steps, selectors for DiT layer and head ("mean" = head average) over the
    cached attention patterns (from run_with_cache with
    names_filter='dit.layers.*.attn.hook_pattern')."""
    patterns = cached_patterns(cache)  # {layer: (N, B, H, S, L + S)}
    first = next(iter(patterns.values()))
    n_steps, n_heads = first.shape[0], first.shape[2]

    def draw(step: int, layer: int, head: Any):
        p = patterns[layer][step, sample]
        p = p.float().mean(0) if head == "mean" else p[head]
        return plot_attention_pattern(p, layout,
                                      title=f"layer {layer}, head {head}, flow step {step}")

    return _explore(draw, {"step": ("flow step", list(range(n_steps)), 0),
                           "layer": ("DiT layer", list(patterns), next(iter(patterns))),
                           "head": ("head", ["mean", *range(n_heads)], "mean")}, static)


def flow_explorer(trace: FlowTrace, final: torch.Tensor, *, sample: int = 0,
                  static: bool | None = None):
    """Slider over flow steps: the state x_t, the clean estimate at that step and the final chunk,
    for a selected action dim."""
    n_steps, dims = trace.num_steps, trace.x_t.shape[-1]

    def draw(step: int, dim: int):
        chunks = {"x_t": trace.x_t[step, sample],
                  "clean estimate": trace.clean_estimate[step, sample], "final": final[sample]}
        fig = plot_action_chunks(chunks, dims=(dim,))
        fig.axes[0].set_title(f"dim {dim}, flow step {step} (t = {float(trace.t[step]):.2f})",
                              fontsize=9)
        return fig

    return _explore(draw, {"step": ("flow step", list(range(n_steps)), 0),
                           "dim": ("action dim", list(range(dims)), 0)}, static)
