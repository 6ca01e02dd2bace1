"""Figures of the DynReach notebooks (05 and 06), drawn from a merged results dict.

Every function follows the project's figure convention (`xr0lab.plots.figure`): single-panel
functions draw into `ax=` when given, every function returns its figure closed in pyplot, and
nothing here writes files (callers save with `save_figure`). A few also return the numbers they
plotted, as (figure, data). matplotlib is imported only when a figure is made.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from xr0lab.dynreach.arms import ARMS
from xr0lab.dynreach.results import delay_rows, late_copy, present, scenarios_in, window_arms
from xr0lab.dynreach.scenarios import SCENARIO_NAMES
from xr0lab.plots.figure import figure_axes, new_figure

COLOURS = {"A0": "#7f7f7f", "A1": "#d62728", "A2": "#ff7f0e", "A3": "#1f77b4", "A4": "#9467bd",
           "A5": "#2ca02c", "A6": "#8c564b", "A7": "#e377c2", "A3paper": "#17becf"}


def arm_label(arm: str) -> str:
    return f"{arm} {ARMS[arm].label}" if arm in ARMS else arm


def plot_masks(chunk: int = 16, prefix: int = 4, windows: Sequence[int] = (1, 2, 4, 8)):
    """The action-action masks: full, causal, Λ band for several w, hard block (p = prefix), in
    the shared segment colours (`xr0lab.plots.segments`): a cell that may attend has its key's
    colour (clean prefix or noisy action), a masked cell is near-white."""
    from xr0lab.model.masks import action_attention_mask
    from xr0lab.plots.segments import (BOUNDARY_COLOUR, mask_segment_index, segment_cmap,
                                       segment_legend)

    panels = [("full (A3)", action_attention_mask(chunk, "full")),
              ("causal (A4, release)", action_attention_mask(chunk, "causal"))]
    panels += [(f"Λ band w={w} (A5)", action_attention_mask(chunk, "band", w)) for w in windows]
    panels.append((f"hard block w=4, p={prefix} (A6)",
                   action_attention_mask(chunk, "hard_block", 4, prefix)))
    fig, axes = new_figure(1, len(panels), size=(2.3 * len(panels), 3.1))
    axes = axes[0]
    columns = ["prefix"] * prefix + ["noisy"] * (chunk - prefix)
    cmap, norm = segment_cmap()
    for ax, (title, m) in zip(axes, panels):
        ax.imshow(mask_segment_index(m, columns), cmap=cmap, norm=norm, interpolation="nearest")
        ax.axhline(prefix - 0.5, color=BOUNDARY_COLOUR, lw=0.8)
        ax.axvline(prefix - 0.5, color=BOUNDARY_COLOUR, lw=0.8)
        ax.set_title(title, fontsize=8)
        ax.set_xticks([]), ax.set_yticks([])
    axes[0].set_ylabel("query action i")
    fig.suptitle(f"action-action masks (coloured = may attend, by key; red lines: prefix "
                 f"p={prefix})", fontsize=9)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    segment_legend(fig, ("prefix", "noisy"), loc="lower center", ncol=3)
    return fig


def plot_prefix_predictability(chunks: np.ndarray, valid: np.ndarray,
                               prefixes: Sequence[int] = (1, 2, 4, 6), *, ax=None):
    """R^2 of a[k] predicted by the last prefix action a[p-1]: why copying is tempting.
    Returns (figure, {p: R^2 curve})."""
    from xr0lab.dynreach.data import prefix_predictability

    own = ax is None
    fig, ax = figure_axes(ax, (5, 3.2))
    out = {}
    for p in prefixes:
        r = prefix_predictability(chunks, p, valid)
        ax.plot(r["k"], r["r2"], marker="o", ms=3, label=f"p = {p}")
        out[p] = r
    ax.set_xlabel("chunk index k"), ax.set_ylabel("R² of a[k] from a[p-1]")
    ax.set_title("expert chunks: how much the prefix alone explains", fontsize=9)
    ax.axhline(0, color="k", lw=0.5)
    ax.legend(fontsize=7)
    if own:
        fig.tight_layout()
    return fig, out


def _delay_panel(ax, results: dict, arms: Sequence[str], metric: str, scenario: str) -> None:
    """One metric vs delay for each arm in one scenario: mean, 95% band, jittered row as x."""
    for a in present(results, arms):
        rows = [(d, e[metric]) for d, e in delay_rows(results, a, scenario) if metric in e]
        if not rows:
            continue
        d = np.array([r[0] for r in rows])
        m = np.array([r[1]["mean"] for r in rows], float)
        lo = np.array([r[1]["low"] for r in rows], float)
        hi = np.array([r[1]["high"] for r in rows], float)
        c = COLOURS.get(a)
        ax.plot(d, m, marker="o", ms=3, color=c, label=arm_label(a))
        ax.fill_between(d, lo, hi, color=c, alpha=0.15)
        for k, e in results["conditions"][a].items():
            if k.startswith(f"{scenario}|jitter=") and metric in e:
                ax.errorbar(e["delay"] + 0.15, e[metric]["mean"],
                            yerr=[[e[metric]["mean"] - e[metric]["low"]],
                                  [e[metric]["high"] - e[metric]["mean"]]],
                            fmt="x", color=c, ms=5)
    ax.set_xlabel("delay d (ticks; x = jittered d±1)")


def plot_vs_delay(results: dict, arms: Sequence[str], metrics: Sequence[tuple[str, str]],
                  scenario: str = "S1"):
    """Metrics vs delay with 95% hierarchical-bootstrap bands; jittered row as a marker."""
    fig, axes = new_figure(1, len(metrics), size=(4.2 * len(metrics), 3.3))
    axes = axes[0]
    for ax, (metric, title) in zip(axes, metrics):
        _delay_panel(ax, results, arms, metric, scenario)
        ax.set_title(title, fontsize=9)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_scenarios(results: dict, arms: Sequence[str], metrics: Sequence[tuple[str, str]]):
    """A grid of metrics vs delay: one row per scenario evaluated, one column per metric."""
    scenarios = scenarios_in(results)
    fig, axes = new_figure(len(scenarios), len(metrics),
                           size=(4.2 * len(metrics), 3.0 * len(scenarios)))
    for r, sc in enumerate(scenarios):
        for c, (metric, title) in enumerate(metrics):
            _delay_panel(axes[r, c], results, arms, metric, sc)
            axes[r, c].set_title(f"{sc} {SCENARIO_NAMES.get(sc, '')}: {title}", fontsize=9)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return fig

def plot_window_sweep(results: dict, delay: int = 4, scenario: str = "S1"):
    """The Λ band's window w against cup success, ERT and the late copy score C(k >= 8), with
    the full mask (A3) as a dashed reference: does a narrower band copy less, and at what cost?"""
    cond = f"{scenario}|d={delay}"
    rows = [(w, a) for w, a in window_arms(results) if cond in results["conditions"][a]]
    fig, axes = new_figure(1, 3, size=(12, 3.2))
    axes = axes[0]
    if not rows:
        for ax in axes:
            ax.set_axis_off()
        axes[1].set_title(f"no Λ-band arms at {cond}", fontsize=9)
        return fig
    w = np.array([r[0] for r in rows])
    for ax, metric, title in ((axes[0], "success_cup", "success, cup mode"),
                              (axes[1], "ert", "excess reaction time (ticks)")):
        es = [results["conditions"][a][cond][metric] for _, a in rows]
        m = np.array([e["mean"] for e in es], float)
        ax.errorbar(w, m, yerr=[m - np.array([e["low"] for e in es], float),
                                np.array([e["high"] for e in es], float) - m],
                    marker="o", color=COLOURS["A5"], capsize=3, label="A5 Λ band")
        ref = results["conditions"].get("A3", {}).get(cond, {}).get(metric)
        if ref is not None:
            ax.axhline(ref["mean"], color=COLOURS["A3"], ls="--", label="A3 full mask")
        ax.set_title(f"{title}, {cond}", fontsize=9)
    late = [late_copy(results.get("conflict", {}).get(a)) for _, a in rows]
    axes[2].plot(w, late, marker="o", color=COLOURS["A5"])
    ref = late_copy(results.get("conflict", {}).get("A3"))
    if ref is not None:
        axes[2].axhline(ref, color=COLOURS["A3"], ls="--")
    axes[2].set_title("late copy score mean C(k >= 8)", fontsize=9)
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xticks(w, [str(v) for v in w])
        ax.set_xlabel("band window w")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig

def plot_pareto(results: dict, arms: Sequence[str], delay: int = 4, scenario: str = "S1"):
    """Reactivity vs smoothness: ERT against cup spill and against jerk at one delay."""
    cond = f"{scenario}|d={delay}"
    fig, axes = new_figure(1, 2, size=(9, 3.6))
    axes = axes[0]
    for ax, xm, xl in ((axes[0], "spill_cup", "spill per episode (cup)"),
                       (axes[1], "jerk", "jerk |a[t+1] - 2a[t] + a[t-1]|")):
        for a in present(results, arms):
            e = results["conditions"][a].get(cond)
            if e is None or xm not in e:
                continue
            x, y = e[xm], e["ert"]
            ax.errorbar(x["mean"], y["mean"], xerr=[[x["mean"] - x["low"]], [x["high"] - x["mean"]]],
                        yerr=[[y["mean"] - y["low"]], [y["high"] - y["mean"]]], fmt="o",
                        color=COLOURS.get(a), label=arm_label(a), capsize=2)
        ax.set_xlabel(xl), ax.set_ylabel("excess reaction time ERT (ticks)")
    axes[0].set_title(f"lower-left is better (d = {delay})", fontsize=9)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_copy_curves(results: dict, arms: Sequence[str], key: str = "conflict"):
    """C(k) per arm (interventional copy score) and the conflict test's cosines.

    key: "conflict" (the agent at the scheduled S1 jump, usually parked on the old goal),
    "conflict_moving" (the agent still moving toward the old goal when the target jumps) or
    "conflict_wall" (S3: a stale straight-line prefix, the new wall in the image; the right
    panel then shows how far the late actions lie from the fresh detour and the stale plan)."""
    fig, axes = new_figure(1, 2, size=(10, 3.4))
    axes = axes[0]
    wall = []
    for a in present(results, arms):
        cf = results.get(key, {}).get(a)
        if cf is None:
            continue
        c = COLOURS.get(a)
        if cf.get("C") is not None:
            C = np.array([np.nan if v is None else v for v in cf["C"]])
            axes[0].plot(np.arange(len(C)), C, marker="o", ms=3, color=c, label=arm_label(a))
        if "cos_new" in cf:
            k = np.arange(len(cf["cos_new"])) + 8
            axes[1].plot(k, cf["cos_new"], color=c, marker="o", ms=3, label=f"{a} new goal")
            axes[1].plot(k, cf["cos_old"], color=c, ls="--", label=f"{a} stale goal")
        else:
            wall.append((a, cf["late_distance_fresh"], cf["late_distance_stale"]))
    axes[0].set_xlabel("chunk index k"), axes[0].set_ylabel("C(k) = Δprefix / (Δprefix + Δobs)")
    axes[0].set_ylim(-0.02, 1.02)
    axes[0].set_title("1 = follows the prefix only, 0 = the image only", fontsize=9)
    axes[0].legend(fontsize=7)
    if wall:
        x = np.arange(len(wall))
        axes[1].bar(x - 0.2, [w[1] for w in wall], 0.4, color=[COLOURS.get(w[0]) for w in wall],
                    label="to the fresh detour plan")
        axes[1].bar(x + 0.2, [w[2] for w in wall], 0.4, color=[COLOURS.get(w[0]) for w in wall],
                    alpha=0.4, hatch="//", label="to the stale straight plan")
        axes[1].set_xticks(x, [w[0] for w in wall])
        axes[1].set_ylabel("mean |a_k - plan_k|, k >= 8")
        axes[1].set_title("S3 wall: lower solid bar = follows the image", fontsize=9)
        axes[1].legend(fontsize=7)
    else:
        axes[1].set_xlabel("chunk index k (late part)")
        axes[1].set_ylabel("mean cos(a_k, goal - x)")
        axes[1].set_title(f"{key.replace('_', ' ')}: stale prefix, new goal in the image",
                          fontsize=9)
        axes[1].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return fig


def plot_attention(results: dict, arms: Sequence[str], *, ax=None):
    """Attention mass on the prefix tokens per DiT layer, late and early noisy rows."""
    own = ax is None
    fig, ax = figure_axes(ax, (5, 3.2))
    for a in present(results, arms):
        att = results["attention"].get(a)
        if att is None:
            continue
        layers = np.arange(len(att["prefix_mass_late"]))
        ax.plot(layers, att["prefix_mass_late"], marker="o", color=COLOURS.get(a),
                label=f"{a} late rows")
        ax.plot(layers, att["prefix_mass_early"], ls="--", color=COLOURS.get(a),
                label=f"{a} early rows")
    ax.set_xlabel("DiT layer"), ax.set_ylabel("attention mass on prefix tokens")
    ax.set_title("diagnostic only: attention is not influence", fontsize=9)
    ax.legend(fontsize=6)
    if own:
        fig.tight_layout()
    return fig


def plot_frame_strip(results: dict, arms: Sequence[str], episode: int = 0, n_frames: int = 6,
                     size: int = 64):
    """Frames of one perturbed test episode per arm (same episode, same noise), with the path."""
    from xr0lab.dynreach.render import render
    from xr0lab.dynreach.scenarios import sample_episodes

    arms = [a for a in present(results, arms) if a in results["examples"]]
    ex0 = results["examples"][arms[0]]
    seed = ex0["seeds"][episode]
    ep = sample_episodes(ex0["condition"].split("|", 1)[0], [seed])
    tp = int(ep.t_perturb[0])
    ticks = np.linspace(max(tp - 8, 0), min(tp + 40, 119), n_frames).astype(int)
    fig, axes = new_figure(len(arms), n_frames, size=(1.6 * n_frames, 1.7 * len(arms)))
    for r, a in enumerate(arms):
        pos = np.asarray(results["examples"][a]["positions"][episode])
        for c, t in enumerate(ticks):
            img = render(ep, np.array([t]), pos[t][None], size)[0]
            ax = axes[r, c]
            ax.imshow(img, extent=(0, 1, 0, 1))
            ax.plot(pos[:t + 1, 0], pos[:t + 1, 1], color="w", lw=0.6, alpha=0.7)
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title(f"t={t}" + (" (jump)" if t >= tp and ticks[max(c - 1, 0)] < tp
                                         else ""), fontsize=7)
        axes[r, 0].set_ylabel(a, fontsize=8)
    fig.suptitle(f"test episode {seed}: target jumps at t={tp} "
                 f"({results['examples'][arms[0]]['condition']})", fontsize=9)
    fig.tight_layout()
    return fig


def plot_smoothness(results: dict, arms: Sequence[str], scenario: str = "S1"):
    """Boundary discontinuity ratio, jerk, cup spill and throughput (cup, plain) vs delay."""
    fig, axes = new_figure(1, 4, size=(16, 3.2))
    axes = axes[0]
    for a in present(results, arms):
        rows = delay_rows(results, a, scenario)
        d = [r[0] for r in rows]
        c = COLOURS.get(a)
        axes[0].plot(d, [r[1]["pooled"]["boundary_ratio"] for r in rows], marker="o", ms=3,
                     color=c, label=arm_label(a))
        axes[1].plot(d, [r[1]["jerk"]["mean"] for r in rows], marker="o", ms=3, color=c)
        axes[2].plot(d, [r[1]["spill_cup"]["mean"] for r in rows], marker="o", ms=3, color=c)
        axes[3].plot(d, [r[1]["pooled"]["throughput_cup"] for r in rows], marker="o", ms=3,
                     color=c)
        axes[3].plot(d, [r[1]["pooled"]["throughput_plain"] for r in rows], ls="--", color=c)
    for ax, t in zip(axes, ("boundary discontinuity ratio", "jerk", "spill (cup)",
                            "successes / 1000 ticks (solid cup, dashed plain)")):
        ax.set_title(t, fontsize=9), ax.set_xlabel("delay d")
    axes[0].axhline(1, color="k", lw=0.5)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_prefix_schedule(n: int = 4000, seed: int = 0, *, ax=None):
    """Distribution of the training prefix length: released code vs the report's wording.
    Returns (figure, {schedule: P(p) for p = 0..6})."""
    import torch

    from xr0lab.dynreach.policies import Tier0Config, xr0_config
    from xr0lab.model.expert import FlowActionExpert

    small = Tier0Config(encoder_width=16, dit_layers=1, dit_width=16, head_dim=16, kv_heads=1)
    own = ax is None
    fig, ax = figure_axes(ax, (5, 3))
    out = {}
    for i, arm in enumerate(("A3", "A3paper")):
        expert = FlowActionExpert(xr0_config(small, ARMS[arm]))
        g = torch.Generator().manual_seed(seed)
        ps = np.array([expert.sample_prefix_length(16, g) for _ in range(n)])
        freq = np.bincount(ps, minlength=7) / n
        out[ARMS[arm].prefix_schedule] = freq
        ax.bar(np.arange(7) + (i - 0.5) * 0.4, freq, width=0.4,
               label=f"{ARMS[arm].prefix_schedule}: P(p=0) = {freq[0]:.2f}")
    ax.set_xlabel("training prefix length p"), ax.set_ylabel("probability")
    ax.legend(fontsize=8)
    ax.set_title("prefix-length schedule", fontsize=9)
    if own:
        fig.tight_layout()
    return fig, out

