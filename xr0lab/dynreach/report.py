"""Figures and findings for the DynReach notebooks (05 and 06), drawn from a results dict.

Every function takes the merged results (`xr0lab.dynreach.sweep.merge_results` / the committed
`data/dynreach_results.json`) and returns a matplotlib figure or a string whose numbers come from
the results; the notebooks only call them. matplotlib is imported lazily.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from xr0lab.dynreach.models import ARMS

COLOURS = {"A0": "#7f7f7f", "A1": "#d62728", "A2": "#ff7f0e", "A3": "#1f77b4", "A4": "#9467bd",
           "A5": "#2ca02c", "A6": "#8c564b", "A7": "#e377c2", "A3paper": "#17becf"}


def _plt():
    import matplotlib.pyplot as plt

    return plt


def arm_label(arm: str) -> str:
    return f"{arm} {ARMS[arm].label}" if arm in ARMS else arm


def present(results: dict, arms: Sequence[str]) -> list[str]:
    return [a for a in arms if a in results["conditions"]]


def delay_rows(results: dict, arm: str, scenario: str = "S1") -> list[tuple[int, dict]]:
    """(d, entry) for the constant-delay rows of an arm, sorted by d."""
    rows = [(e["delay"], e) for k, e in results["conditions"][arm].items()
            if k.startswith(f"{scenario}|d=")]
    return sorted(rows, key=lambda r: r[0])


def value(results: dict, arm: str, cond: str, metric: str, part: str = "mean"):
    e = results["conditions"].get(arm, {}).get(cond)
    if e is None or metric not in e:
        return None
    return e[metric][part]


# ------------------------------------------------------------------------------- figures


def plot_masks(chunk: int = 16, prefix: int = 4, windows: Sequence[int] = (1, 2, 4, 8)):
    """The action-action masks: full, causal, Λ band for several w, hard block (p = prefix)."""
    from xr0lab.model.masks import action_attention_mask

    plt = _plt()
    panels = [("full (A3)", action_attention_mask(chunk, "full")),
              ("causal (A4, release)", action_attention_mask(chunk, "causal"))]
    panels += [(f"Λ band w={w} (A5)", action_attention_mask(chunk, "band", w)) for w in windows]
    panels.append((f"hard block w=4, p={prefix} (A6)",
                   action_attention_mask(chunk, "hard_block", 4, prefix)))
    fig, axes = plt.subplots(1, len(panels), figsize=(2.3 * len(panels), 2.7))
    for ax, (title, m) in zip(axes, panels):
        ax.imshow(m.numpy(), cmap="Greys", vmin=0, vmax=1.3)
        ax.axhline(prefix - 0.5, color="tab:red", lw=0.8)
        ax.axvline(prefix - 0.5, color="tab:red", lw=0.8)
        ax.set_title(title, fontsize=8)
        ax.set_xticks([]), ax.set_yticks([])
    axes[0].set_ylabel("query action i")
    fig.suptitle(f"action-action masks (black = may attend; red lines: prefix p={prefix})",
                 fontsize=9)
    fig.tight_layout()
    return fig


def plot_prefix_predictability(chunks: np.ndarray, valid: np.ndarray,
                               prefixes: Sequence[int] = (1, 2, 4, 6)):
    """R^2 of a[k] predicted by the last prefix action a[p-1]: why copying is tempting."""
    from xr0lab.dynreach.data import prefix_predictability

    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    out = {}
    for p in prefixes:
        r = prefix_predictability(chunks, p, valid)
        ax.plot(r["k"], r["r2"], marker="o", ms=3, label=f"p = {p}")
        out[p] = r
    ax.set_xlabel("chunk index k"), ax.set_ylabel("R² of a[k] from a[p-1]")
    ax.set_title("expert chunks: how much the prefix alone explains", fontsize=9)
    ax.axhline(0, color="k", lw=0.5)
    ax.legend(fontsize=7)
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
    plt = _plt()
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.3))
    axes = np.atleast_1d(axes)
    for ax, (metric, title) in zip(axes, metrics):
        _delay_panel(ax, results, arms, metric, scenario)
        ax.set_title(title, fontsize=9)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def scenarios_in(results: dict) -> list[str]:
    """The scenarios evaluated in a results dict, in S1..S4 order."""
    found = {k.split("|", 1)[0] for conds in results["conditions"].values() for k in conds}
    return sorted(found)


def plot_scenarios(results: dict, arms: Sequence[str], metrics: Sequence[tuple[str, str]]):
    """A grid of metrics vs delay: one row per scenario evaluated, one column per metric."""
    plt = _plt()
    scenarios = scenarios_in(results)
    fig, axes = plt.subplots(len(scenarios), len(metrics),
                             figsize=(4.2 * len(metrics), 3.0 * len(scenarios)), squeeze=False)
    for r, sc in enumerate(scenarios):
        for c, (metric, title) in enumerate(metrics):
            _delay_panel(axes[r, c], results, arms, metric, sc)
            axes[r, c].set_title(f"{sc} {SCENARIO_NAMES.get(sc, '')}: {title}", fontsize=9)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return fig


SCENARIO_NAMES = {"S1": "jump-reach", "S2": "cue switch", "S3": "pop-up wall",
                  "S4": "moving target", "S1E": "early jump, agent moving"}


def window_arms(results: dict) -> list[tuple[int, str]]:
    """(w, arm id) of the Λ-band arms present, sorted by w (A5 is the band at w = 4)."""
    out = [(ARMS[a].window, a) for a in results["conditions"]
           if a in ARMS and ARMS[a].attention == "band" and ARMS[a].runtime == "prefix"
           and not ARMS[a].rope_offset and not ARMS[a].prefix_hiding]
    return sorted(set(out))


def plot_window_sweep(results: dict, delay: int = 4, scenario: str = "S1"):
    """The Λ band's window w against cup success, ERT and the late copy score C(k >= 8), with
    the full mask (A3) as a dashed reference: does a narrower band copy less, and at what cost?"""
    plt = _plt()
    cond = f"{scenario}|d={delay}"
    rows = [(w, a) for w, a in window_arms(results) if cond in results["conditions"][a]]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
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
    late = [_late_copy(results.get("conflict", {}).get(a)) for _, a in rows]
    axes[2].plot(w, late, marker="o", color=COLOURS["A5"])
    ref = _late_copy(results.get("conflict", {}).get("A3"))
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


def _late_copy(cf: dict | None, late_from: int = 8) -> float | None:
    """Mean C(k) over k >= late_from, or None where C is missing."""
    vals = [v for v in ((cf or {}).get("C") or [])[late_from:] if v is not None]
    return float(np.mean(vals)) if vals else None


def plot_pareto(results: dict, arms: Sequence[str], delay: int = 4, scenario: str = "S1"):
    """Reactivity vs smoothness: ERT against cup spill and against jerk at one delay."""
    plt = _plt()
    cond = f"{scenario}|d={delay}"
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
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
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
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


def plot_attention(results: dict, arms: Sequence[str]):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.2))
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
    fig.tight_layout()
    return fig


def plot_frame_strip(results: dict, arms: Sequence[str], episode: int = 0, n_frames: int = 6,
                     size: int = 64):
    """Frames of one perturbed test episode per arm (same episode, same noise), with the path."""
    from xr0lab.dynreach.world import render, sample_episodes

    plt = _plt()
    arms = [a for a in present(results, arms) if a in results["examples"]]
    ex0 = results["examples"][arms[0]]
    seed = ex0["seeds"][episode]
    ep = sample_episodes(ex0["condition"].split("|", 1)[0], [seed])
    tp = int(ep.t_perturb[0])
    ticks = np.linspace(max(tp - 8, 0), min(tp + 40, 119), n_frames).astype(int)
    fig, axes = plt.subplots(len(arms), n_frames, figsize=(1.6 * n_frames, 1.7 * len(arms)))
    axes = np.atleast_2d(axes)
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
    plt = _plt()
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.2))
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


def plot_prefix_schedule(n: int = 4000, seed: int = 0):
    """Distribution of the training prefix length: released code vs the report's wording."""
    import torch

    from xr0lab.model.expert import FlowActionExpert
    from xr0lab.dynreach.models import Tier0Config, xr0_config

    plt = _plt()
    small = Tier0Config(encoder_width=16, dit_layers=1, dit_width=16, head_dim=16, kv_heads=1)
    fig, ax = plt.subplots(figsize=(5, 3))
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
    fig.tight_layout()
    return fig, out


# ------------------------------------------------------------------------------- findings


def _fmt(e, digits: int = 2, pct: bool = False) -> str:
    if e is None:
        return "n/a"
    s = 100.0 if pct else 1.0
    u = "%" if pct else ""
    return f"{e['mean'] * s:.{digits}f}{u} [{e['low'] * s:.{digits}f}, {e['high'] * s:.{digits}f}]"


def source_line(results: dict, full: bool, file: str = "data/dynreach_results.json") -> str:
    m = results["meta"]
    seeds = sorted({int(c.rsplit("seed", 1)[1]) for c in m["cells"]})
    n = m["config"]["eval"]["n_episodes"]
    what = f"committed {m['name']!r} sweep results ({file})" if full else \
        f"the {m['name']!r} sweep run in this notebook"
    return (f"Source: {what}; {len(seeds)} training seed(s), {n} test episodes per condition, "
            f"{m['threads']} thread(s), created {m['created']}.")


def primary_text(results: dict) -> str:
    lines = []
    for r in results.get("primary", []):
        verdict = "significant" if r["p_holm"] < 0.05 else "not significant"
        lines.append(f"ERT({r['a']}) - ERT({r['b']}) at d = 4, S1 cup: {r['mean']:+.2f} ticks "
                     f"(95% CI [{r['low']:+.2f}, {r['high']:+.2f}], Holm p = {r['p_holm']:.3g},"
                     f" {verdict}; {r['n_seeds']} seeds x {r['n_episodes'] // max(r['n_seeds'], 1)}"
                     f" episodes).")
    return "\n".join(lines) if lines else "Primary endpoint: arms A3/A5/A6 not all present."


def findings_lambda(results: dict, delay: int = 4) -> str:
    """Notebook 05's findings, every number read from `results`."""
    cond = f"S1|d={delay}"
    arms = present(results, ("A1", "A3", "A4", "A5", "A6", "A7"))
    out = [primary_text(results)]
    for a in arms:
        cf = results["conflict"].get(a, {})
        C = _late_copy(cf)
        mv = results.get("conflict_moving", {}).get(a)
        Cm = _late_copy(mv)
        out.append(
            f"{a}: success (cup) {_fmt(results['conditions'][a].get(cond, {}).get('success_cup'), 1, True)}, "
            f"ERT {_fmt(results['conditions'][a].get(cond, {}).get('ert'))} ticks, "
            f"obs-following index {cf.get('obs_following_index', float('nan')):.2f}, "
            f"copy fraction {cf.get('copy_fraction', float('nan')):.2f}"
            + (f", mean C(k >= 8) = {C:.2f}" if C is not None else "")
            + (f"; moving agent: obs-following {mv['obs_following_index']:.2f}, copy fraction "
               f"{mv['copy_fraction']:.2f}" if mv else "")
            + (f", mean C(k >= 8) = {Cm:.2f}" if Cm is not None else "") + ".")
    att = results.get("attention", {})
    if "A3" in att and "A5" in att:
        out.append(f"Attention mass on the prefix from late rows (k >= 8), mean over layers: "
                   f"A3 {np.mean(att['A3']['prefix_mass_late']):.3f} vs A5 "
                   f"{np.mean(att['A5']['prefix_mass_late']):.3f} (the band removes direct "
                   f"attention by construction; this is not a measure of influence).")
    probe = results.get("stage_a", {})
    if probe:
        r2 = [v["probe"]["r2"] for v in probe.values()]
        readable = ("the goal is linearly readable, so copying the prefix would be a shortcut, "
                    "not blindness" if np.min(r2) >= 0.8 else
                    "the goal is only partly readable in this run (undertrained encoder), so "
                    "copying cannot be told apart from blindness here")
        out.append(f"Linear probe of the visible goal from the context tokens: held-out R² "
                   f"{np.mean(r2):.3f} (min {np.min(r2):.3f} over {len(r2)} seed(s)); "
                   f"{readable}.")
    return "\n".join(out)


def findings_window(results: dict, delay: int = 4, scenario: str = "S1") -> str:
    """One line per Λ-band window: cup success, ERT and late C(k), read from `results`."""
    cond = f"{scenario}|d={delay}"
    parts = []
    for w, a in window_arms(results):
        e = results["conditions"][a].get(cond)
        if e is None:
            continue
        c = _late_copy(results.get("conflict", {}).get(a))
        parts.append(f"w = {w} ({a}): success {_fmt(e.get('success_cup'), 1, True)}, ERT "
                     f"{_fmt(e.get('ert'))}" + (f", C(k >= 8) {c:.2f}" if c is not None else ""))
    if not parts:
        return f"No Λ-band arms evaluated at {cond}."
    return f"Λ band window at {cond} (cup): " + "; ".join(parts) + "."


def findings_scenarios(results: dict, delay: int = 4) -> str:
    """Findings of the S1-S3 sweep (one policy per seed trained on all three), from `results`:
    per scenario, each arm's cup success and ERT at `delay`, and the paired A3 - A5 / A3 - A6
    ERT differences (secondary family, Holm over all its tests)."""
    out = []
    for sc in scenarios_in(results):
        cond = f"{sc}|d={delay}"
        parts = []
        for a in present(results, ("A0", "A1", "A3", "A4", "A5", "A6", "A7")):
            e = results["conditions"][a].get(cond)
            if e is not None:
                parts.append(f"{a} {_fmt(e.get('success_cup'), 1, True)} / "
                             f"{_fmt(e.get('ert'))}")
        out.append(f"{sc} ({SCENARIO_NAMES.get(sc, sc)}), d = {delay}, cup success / ERT "
                   f"(ticks): " + "; ".join(parts) + ".")
        for r in results.get("secondary", []) + results.get("primary", []):
            if r["condition"].split(" ")[0] == cond and r["metric"] == "ert" and \
                    r["a"] == "A3" and r["b"] in ("A5", "A6"):
                verdict = "significant" if r["p_holm"] < 0.05 else "not significant"
                out.append(f"  ERT(A3) - ERT({r['b']}) in {sc}: {r['mean']:+.2f} ticks "
                           f"[{r['low']:+.2f}, {r['high']:+.2f}], p = {r['p_value']:.3g}, "
                           f"Holm p = {r['p_holm']:.3g} ({verdict} after Holm).")
    wall = results.get("conflict_wall", {})
    parts = []
    for a in present(results, ("A3", "A4", "A5", "A6", "A7")):
        cf = wall.get(a)
        if cf is None:
            continue
        parts.append(f"{a} C(k >= 8) = {_late_copy(cf):.2f}, late actions "
                     f"{cf['late_distance_fresh']:.4f} from the detour vs "
                     f"{cf['late_distance_stale']:.4f} from the stale straight plan")
    if parts:
        out.append("S3 conflict test (stale straight-line prefix, wall in the image): "
                   + "; ".join(parts) + ".")
    return "\n".join(out)


def findings_prefix(results: dict, delay: int = 4, scenario: str = "S1") -> str:
    """Notebook 06's findings, every number read from `results`."""
    cond = f"{scenario}|d={delay}"
    out = []
    for a in present(results, ("A0", "A1", "A2", "A3")):
        e = results["conditions"][a].get(cond)
        if e is None:
            continue
        p = e["pooled"]
        out.append(f"{a} ({ARMS[a].label}) at d = {delay} in {scenario}: success plain "
                   f"{_fmt(e['success_plain'], 1, True)}, cup {_fmt(e['success_cup'], 1, True)}; "
                   f"spill {_fmt(e['spill_cup'], 3)}; boundary ratio {p['boundary_ratio']:.2f}; "
                   f"jerk {e['jerk']['mean']:.4f}; throughput {p['throughput_cup']:.1f} (cup) / "
                   f"{p['throughput_plain']:.1f} (plain) successes per 1,000 ticks.")
    sec = [r for r in results.get("secondary", []) if r["condition"] == cond and
           r["b"] in ("A0", "A1", "A2") and r["metric"] == "success_cup"]
    for r in sec:
        out.append(f"Paired: success_cup(A3) - success_cup({r['b']}) = {100 * r['mean']:+.1f} "
                   f"points [{100 * r['low']:+.1f}, {100 * r['high']:+.1f}], Holm p = "
                   f"{r['p_holm']:.3g}.")
    cost = results.get("cost", {})
    if "A2" in cost and "A3" in cost:
        out.append(f"Cost per chunk: guidance (A2) {cost['A2']['denoise_flops'] / 1e6:.0f} MFLOP "
                   f"vs trained prefix (A3) {cost['A3']['denoise_flops'] / 1e6:.0f} MFLOP "
                   f"({cost['A2']['chunk_seconds_median'] * 1e3:.1f} ms vs "
                   f"{cost['A3']['chunk_seconds_median'] * 1e3:.1f} ms on this CPU).")
    return "\n".join(out)
