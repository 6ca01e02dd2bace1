"""The effect of K/V interventions on the action chunk, from
`xr0lab.inspect.interventions.kv_layer_sweep` records."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from xr0lab.plots.figure import figure_axes


def plot_kv_effects(records: Sequence[Mapping[str, Any]], *, value: str = "l2", ax=None,
                    title: str | None = None):
    """Grouped bars of the action change per VLM layer (and "all") for each intervention kind,
    from `kv_layer_sweep` records."""
    kinds = list(dict.fromkeys(r["kind"] for r in records))
    layers = list(dict.fromkeys(r["vlm_layer"] for r in records))
    fig, ax = figure_axes(ax, (1.0 * len(layers) * len(kinds) / 2 + 3, 3))
    width = 0.8 / len(kinds)
    for k, kind in enumerate(kinds):
        vals = {r["vlm_layer"]: r[value] for r in records if r["kind"] == kind}
        ax.bar([i + (k - (len(kinds) - 1) / 2) * width for i in range(len(layers))],
               [vals.get(j, 0.0) for j in layers], width=width, label=kind)
    ax.set_xticks(range(len(layers)), [str(j) for j in layers])
    ax.set_xlabel("VLM layer whose K/V is changed")
    ax.set_ylabel(f"action change ({value})")
    ax.legend(fontsize=8)
    ax.set_title(title or "effect of K/V interventions on the chunk (same noise)", fontsize=10)
    return fig
