"""The effect of K/V interventions on the action chunk: how far it moves
(`xr0lab.inspect.interventions.kv_layer_sweep` records) and where it heads
(`xr0lab.inspect.dynreach.kv_target_sweep` records)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from xr0lab.plots.figure import figure_axes


def plot_kv_effects(records: Sequence[Mapping[str, Any]], *, value: str = "l2", ax=None,
                    title: str | None = None, reference: float | None = None,
                    ylabel: str | None = None):
    """Grouped bars of `value` per VLM layer (and "all") for each intervention kind, from
    `kv_layer_sweep` (or `xr0lab.inspect.dynreach.kv_target_sweep`) records; `reference` (e.g.
    the intact chunk's value) is drawn as a dashed line."""
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
    if reference is not None:
        ax.axhline(reference, color="black", ls="--", lw=0.9, label="intact")
    ax.set_ylabel(ylabel or f"action change ({value})")
    ax.legend(fontsize=8)
    ax.set_title(title or "effect of K/V interventions on the chunk (same noise)", fontsize=10)
    return fig


def plot_kv_target_effects(records: Sequence[Mapping[str, Any]], names: Sequence[str], *,
                           labels: Mapping[str, str] | None = None, title: str | None = None):
    """One panel per target name: the chunks' mean heading angle to that target (degrees) per
    intervention kind and VLM layer, the intact chunk's as a dashed line (`kv_target_sweep`
    records)."""
    from xr0lab.plots.figure import new_figure

    intact = next((r for r in records if r["kind"] == "intact"), None)
    rest = [r for r in records if r["kind"] != "intact"]
    fig, axes = new_figure(1, len(names), size=(5.2 * len(names), 3.3), sharey=True)
    for ax, name in zip(axes[0], names):
        label = (labels or {}).get(name, name)
        plot_kv_effects(rest, value=f"angle_{name}", ax=ax,
                        reference=None if intact is None else intact[f"angle_{name}"],
                        ylabel="heading angle (degrees)", title=f"angle to {label}")
        ax.set_ylim(0, 180)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
