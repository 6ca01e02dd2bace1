"""DynReach frames with chunks drawn on them as paths: what the example model saw and where its
chunk would take the agent, next to the expert's path (notebooks 01-03).

Frames are drawn in world coordinates (`imshow` with extent [0, 1]^2, y up), so positions from
`xr0lab.inspect.dynreach.chunk_path` land on the pixels that show them (pixel (i, j) has its
centre at x = (j + 0.5) / S, y = 1 - (i + 0.5) / S, as `xr0lab.dynreach.render` draws).

Axes: H chunk length, N flow steps, S image side, 2 = (x, y).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from xr0lab.plots.figure import figure_axes, new_figure

# White with a black rim: legible on the dark frame and on a white legend alike.
EXPERT_COLOUR = "white"
TARGET_STYLE = dict(marker="x", ms=9, mew=2.2, ls="none")
# Paths of model chunks, in order of appearance; distinct from the frame's green target.
PATH_COLOURS = ("#E69F00", "#56B4E9", "#CC79A7", "#F0E442", "#D55E00", "#0072B2")


def plot_frame(image: np.ndarray, *, ax=None, title: str | None = None):
    """A DynReach frame (S, S, 3) in world coordinates, [0, 1]^2 with y up."""
    fig, ax = figure_axes(ax, (3.6, 3.6))
    ax.imshow(np.asarray(image), extent=(0, 1, 0, 1), origin="upper", interpolation="nearest")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)
    return fig


def draw_path(ax, path: np.ndarray, *, label: str | None = None, color: Any = PATH_COLOURS[0],
              end_marker: bool = True, **kwargs: Any) -> None:
    """One path (H + 1, 2) from its start, with a dot at its end."""
    p = np.asarray(path, float)
    kwargs.setdefault("lw", 1.8)
    ax.plot(p[:, 0], p[:, 1], color=color, label=label, **kwargs)
    if end_marker:
        ax.plot(p[-1, 0], p[-1, 1], "o", color=color, ms=3.5)


def draw_expert(ax, path: np.ndarray, *, label: str = "expert") -> None:
    """The expert's path: dashed white with a black rim."""
    from matplotlib import patheffects

    draw_path(ax, path, label=label, color=EXPERT_COLOUR, end_marker=False, ls="--", lw=1.4,
              path_effects=[patheffects.withStroke(linewidth=2.6, foreground="black")])


def plot_paths_on_frame(image: np.ndarray, paths: Mapping[str, np.ndarray], *,
                        expert: np.ndarray | None = None, expert_label: str = "expert",
                        targets: Mapping[str, tuple[np.ndarray, str]] | None = None, ax=None,
                        title: str | None = None, legend: bool = True):
    """A frame with chunk paths ({label: (H + 1, 2)}, coloured in order from PATH_COLOURS), the
    expert's path (dashed) and named target markers ({label: (position (2,), colour)})."""
    fig, ax = figure_axes(ax, (4.2, 4.2))
    plot_frame(image, ax=ax, title=title)
    if expert is not None:
        draw_expert(ax, expert, label=expert_label)
    for (label, path), colour in zip(paths.items(), PATH_COLOURS * 4):
        draw_path(ax, path, label=label, color=colour)
    for label, (pos, colour) in (targets or {}).items():
        ax.plot(*np.asarray(pos, float), color=colour, label=label, **TARGET_STYLE)
    if legend:
        ax.legend(fontsize=7, loc="lower left", bbox_to_anchor=(0.0, 1.08 if title else 1.0),
                  ncol=2, frameon=False)
    return fig


def plot_scenes(images: np.ndarray, paths: Mapping[str, np.ndarray], *,
                experts: np.ndarray | None = None, expert_label: str = "expert",
                targets: Mapping[str, tuple[np.ndarray, str]] | None = None,
                titles: Sequence[str] | None = None, suptitle: str | None = None):
    """Several frames side by side: images (B, S, S, 3), paths {label: (B, H + 1, 2)}, experts
    (B, H + 1, 2), targets {label: ((B, 2), colour)}; one legend under the row."""
    n = len(images)
    fig, axes = new_figure(1, n, size=(3.3 * n, 3.9))
    for b, ax in enumerate(axes[0]):
        plot_paths_on_frame(images[b], {k: v[b] for k, v in paths.items()},
                            expert=None if experts is None else experts[b],
                            expert_label=expert_label,
                            targets={k: (np.asarray(p)[b], c) for k, (p, c) in
                                     (targets or {}).items()},
                            ax=ax, title=None if titles is None else titles[b], legend=False)
    handles, labels = axes[0][0].get_legend_handles_labels()
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout(rect=(0, 0.1, 1, 0.94 if suptitle else 1))
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 6), fontsize=8,
               frameon=False)
    return fig


def plot_flow_on_frame(image: np.ndarray, x_t: np.ndarray, clean: np.ndarray, t: Sequence[float],
                       *, final: np.ndarray, expert: np.ndarray | None = None,
                       expert_label: str = "expert", target: np.ndarray | None = None,
                       title: str | None = None):
    """Noise turning into a chunk, on the frame: one panel per flow step k with the path of the
    state x_t entering the step (solid) and of its one-step clean estimate (dotted), and a last
    panel with the final chunk; the expert's path dashed in every panel.

    x_t, clean: (N, H + 1, 2) paths per step; final: (H + 1, 2); t: the N flow times.
    """
    import matplotlib as mpl

    n = len(t)
    cmap = mpl.colormaps["cool"]  # bright at both ends: legible on the dark frame
    fig, axes = new_figure(1, n + 1, size=(2.6 * (n + 1), 3.2))
    for k, ax in enumerate(axes[0]):
        last = k == n
        plot_frame(image, ax=ax, title="final chunk (t = 1)" if last
                   else f"step {k}: t = {float(t[k]):.2f}")
        if expert is not None:
            draw_expert(ax, expert, label=expert_label)
        if last:
            draw_path(ax, final, label="final chunk", color=cmap(1.0))
        else:
            colour = cmap(float(t[k]))
            draw_path(ax, x_t[k], label="x_t (state)", color=colour)
            draw_path(ax, clean[k], label="clean estimate", color=colour, ls=":", lw=1.6)
        if target is not None:
            ax.plot(*np.asarray(target, float), color="#00FF66", **TARGET_STYLE)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.suptitle(title or "noise becoming a chunk, drawn as the path it would drive "
                 "(colour = flow time)", fontsize=10)
    fig.tight_layout(rect=(0, 0.1, 1, 0.94))
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
    return fig
