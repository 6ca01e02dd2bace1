"""Figures and a what-if explorer for latency: predicted breakdowns, measured vs predicted stages,
reaction-time floors of the async executor. Plots are made from profile records
(`xr0lab.latency.records`) and predictions (`xr0lab.latency.roofline`); nothing here measures
anything. The figures follow `xr0lab.plots.figure`: single panels draw into `ax=`, every function
returns its figure closed, and the caller saves it (`save_figure`).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from xr0lab.config import XR0Config, preset
from xr0lab.latency.devices import DEVICES, Device, get_device
from xr0lab.latency.roofline import REPORTED_RTX4090_S, Fusion, group_stages, predict, stage_group
from xr0lab.latency.workload import RELEASED, Workload, whole_tokens
from xr0lab.plots.figure import figure_axes
from xr0lab.runtime.planner import Plan

STAGE_GROUPS = ("preprocess", "vision", "prefill", "handoff", "dit", "postprocess")
_COLORS = dict(zip(STAGE_GROUPS, ("#999999", "#4c72b0", "#dd8452", "#8172b3", "#55a868",
                                  "#c44e52")))


def plot_predicted_breakdown(config: XR0Config | None = None, workload: Workload = RELEASED,
                             devices: Sequence[Device] | None = None, *,
                             reported_s: float | None = REPORTED_RTX4090_S,
                             fusion: Fusion = "none", ax=None):
    """Stacked bars of predicted ms per stage group, one bar per device; the reported RTX 4090
    latency as a marker on its bar."""
    config = config or preset("xr0")
    devices = list(devices or DEVICES.values())
    fig, ax = figure_axes(ax, (8, 1.2 + 0.55 * len(devices)))
    for row, dev in enumerate(devices):
        groups = group_stages(predict(config, workload, dev, fusion=fusion))
        left = 0.0
        for g in STAGE_GROUPS:
            ms = groups.get(g, 0.0) * 1e3
            ax.barh(row, ms, left=left, color=_COLORS[g], label=g if row == 0 else None)
            left += ms
        ax.text(left, row, f" {left:.1f} ms", va="center", fontsize=8)
        if reported_s is not None and dev.name == "rtx4090":
            ax.plot(reported_s * 1e3, row, "k|", markersize=22, mew=2,
                    label=f"reported {reported_s * 1e3:.0f} ms")
    ax.set_yticks(range(len(devices)), [d.name for d in devices])
    ax.invert_yaxis()
    ax.set_xlabel("predicted ms per inference (roofline + launch overhead)")
    ax.set_title(f"{workload.name} workload, fusion={fusion}")
    ax.set_xlim(0, ax.get_xlim()[1] * 1.12)  # room for the total labels
    ax.legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.22))
    fig.tight_layout()
    return fig


def plot_breakdown(record: dict, *, prediction: str = "probe", ax=None):
    """Measured p50 (with p95 whisker) vs predicted time per stage, DiT steps merged."""
    merged: dict[str, list[float]] = {}
    pred = record.get("predictions", {}).get(prediction, {})
    for name, st in record["stages"].items():
        m = merged.setdefault(stage_group(name), [0.0, 0.0, 0.0])
        m[0] += st["p50"] * 1e3
        m[1] += st["p95"] * 1e3
        m[2] += pred.get(name, 0.0) * 1e3
    names = list(merged)
    x = np.arange(len(names))
    fig, ax = figure_axes(ax, (8, 3.6))
    ax.bar(x - 0.2, [merged[n][0] for n in names], 0.4, label="measured p50",
           yerr=[[0] * len(names), [merged[n][1] - merged[n][0] for n in names]], capsize=3)
    if pred:
        ax.bar(x + 0.2, [merged[n][2] for n in names], 0.4, label=f"predicted ({prediction})")
    ax.set_xticks(x, names, rotation=20)
    ax.set_ylabel("ms (whisker: p95)")
    ax.set_title(f"{record['preset']} on {record['device']['name']} ({record['dtype']}, "
                 f"{record['threads']} thread(s)); total p50 {record['total']['p50'] * 1e3:.1f} ms",
                 fontsize=9)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_reaction_floors(plan: Plan, *, ax=None):
    """Worst-case reaction floor (ms) against the trigger period s, at the smallest feasible p
    for each s; async and sync side by side."""
    best: dict[int, object] = {}
    for r in plan.rows:
        s = r.setting.s
        if s not in best or r.setting.p < best[s].setting.p:
            best[s] = r
    s_values = sorted(best)
    fig, ax = figure_axes(ax, (7, 3.4))
    ax.plot(s_values, [best[s].async_floor.worst_s * 1e3 for s in s_values], "o-",
            label="async (p = d)")
    ax.plot(s_values, [best[s].sync_floor.worst_s * 1e3 for s in s_values], "s--",
            label="sync")
    ax.set_xlabel("trigger period s (ticks); k = H - s")
    ax.set_ylabel("worst reaction floor (ms)")
    ax.set_title(f"d = {plan.d} ticks (q{plan.quantile:g} latency {plan.latency_s * 1e3:.0f} ms "
                 f"at {plan.rate_hz:g} Hz), H = {plan.horizon}", fontsize=9)
    ax.legend()
    fig.tight_layout()
    return fig


def whatif(views: int = 3, height: int = 256, width: int = 320, steps: int = 5,
           vlm_layers: int | None = None,
           launch_us: float = 5.0, device: str = "rtx4090", fused: bool = False,
           config: XR0Config | None = None) -> dict[str, float]:
    """Predicted ms per stage group for one what-if setting of the released configuration.
    `vlm_layers` defaults to the config's whole VLM."""
    config = config or preset("xr0")
    dev = dataclasses.replace(get_device(device), launch_overhead_s=launch_us * 1e-6)
    hw = whole_tokens(config, height, width)
    layers = config.vlm.num_layers if vlm_layers is None else vlm_layers
    w = dataclasses.replace(RELEASED, views=views, image_hw=hw,
                            num_steps=steps, vlm_layers=max(layers, config.dit.num_layers))
    preds = predict(config, w, dev, fusion="elementwise" if fused else "none")
    return {k: v * 1e3 for k, v in group_stages(preds).items()}


def plot_whatif(ms: dict[str, float], *, device: str = "rtx4090", ax=None):
    """One stacked bar of predicted ms per stage group (from `whatif`), the reported RTX 4090
    latency as a dotted line."""
    fig, ax = figure_axes(ax, (8, 1.9))
    left = 0.0
    for g in STAGE_GROUPS:
        ax.barh(0, ms.get(g, 0.0), left=left, color=_COLORS[g], label=g)
        left += ms.get(g, 0.0)
    ax.axvline(REPORTED_RTX4090_S * 1e3, color="k", ls=":",
               label=f"reported {REPORTED_RTX4090_S * 1e3:.0f} ms (RTX 4090)")
    ax.set_yticks([])
    ax.set_xlabel("ms")
    ax.set_title(f"predicted {left:.1f} ms per inference on {device}", fontsize=9)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    return fig


def whatif_widget(config: XR0Config | None = None, *, static: bool | None = None):
    """Sliders over `whatif` (views, image height/width, steps, VLM layers, launch overhead,
    device, fusion) showing the predicted breakdown (`plot_whatif`).

    Like the explorers of `xr0lab.plots.widgets`: without a frontend
    (`xr0lab.workspace.frontend.has_frontend`: scripts, tests, the headless runner's kernels) it
    returns the static figure of the released setting and creates no widget; `static=True` forces
    the figure, `static=False` the widget."""
    from xr0lab.workspace.frontend import has_frontend

    config = config or preset("xr0")
    if static or (static is None and not has_frontend()):
        return plot_whatif(whatif(config=config), device="rtx4090")
    import ipywidgets as w
    from IPython.display import display

    def show(views, height, width, steps, vlm_layers, launch_us, device, fused):
        ms = whatif(views, height, width, steps, vlm_layers, launch_us, device, fused, config)
        display(plot_whatif(ms, device=device))

    return w.interactive(
        show, views=w.IntSlider(3, 1, 4), height=w.IntSlider(256, 32, 640, 32),
        width=w.IntSlider(320, 32, 640, 32),
        steps=w.IntSlider(5, 1, 10),
        vlm_layers=w.IntSlider(config.vlm.num_layers, config.dit.num_layers,
                               config.vlm.num_layers),
        launch_us=w.FloatSlider(5.0, min=0.0, max=15.0, step=0.5),
        device=w.Dropdown(options=list(DEVICES), value="rtx4090"),
        fused=w.Checkbox(False, description="fuse elementwise"))


def whatif_grid(values: dict[str, Sequence], config: XR0Config | None = None) -> list[dict]:
    """The static stand-in for the widget: one row per value of each knob (others at their
    defaults), predicted total ms and ratio to the default setting."""
    base = sum(whatif(config=config).values())
    rows = []
    for knob, options in values.items():
        for value in options:
            total = sum(whatif(config=config, **{knob: value}).values())
            rows.append({"knob": knob, "value": value, "total_ms": total, "ratio": total / base})
    return rows


def format_rows(rows: Sequence[dict], floatfmt: str = ".2f") -> str:
    """A plain-text table of dict rows (the static stand-in where no widget frontend exists)."""
    if not rows:
        return "(no rows)"
    keys = list(rows[0])
    cells = [[format(r[k], floatfmt) if isinstance(r[k], float) else str(r[k]) for k in keys]
             for r in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    lines = ["  ".join(k.rjust(w) for k, w in zip(keys, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def plot_whatif_grid(rows: Sequence[dict], *, ax=None):
    """Predicted total / default for each what-if knob value (from `whatif_grid`)."""
    labels = [f"{r['knob']}={r['value']}" for r in rows]
    fig, ax = figure_axes(ax, (7, 0.3 + 0.28 * len(rows)))
    ax.barh(range(len(rows)), [r["ratio"] for r in rows], color="#4c72b0")
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("predicted latency / released configuration (RTX 4090)")
    fig.tight_layout()
    return fig


def plot_launch_sensitivity(rows: Sequence[dict], *, refit: Sequence[dict] = (),
                            reported_s: float | None = REPORTED_RTX4090_S, device: str = "rtx4090",
                            ax=None):
    """Predicted total ms against the per-launch overhead (rows of
    `xr0lab.latency.roofline.launch_overhead_sweep`), the DiT's share beneath it; refitted
    overheads (rows with a "fit" name) as markers and the reported latency as a dotted line."""
    fig, ax = figure_axes(ax, (6.4, 3.4))
    us = [r["us"] for r in rows]
    ax.plot(us, [r["total_ms"] for r in rows], "o-", color="#4c72b0", label="total")
    ax.plot(us, [r["dit_ms"] for r in rows], "s--", color=_COLORS["dit"], label="DiT (5 steps)")
    ax.fill_between(us, [r["total_ms"] - r["launch_ms"] for r in rows],
                    [r["total_ms"] for r in rows], color="#4c72b0", alpha=0.12,
                    label="launch term")
    for r in refit:
        ax.plot(r["us"], r["total_ms"], "k^", markersize=7)
        ax.annotate(f"{r['fit']}\n{r['us']:.1f} us, {r['total_ms']:.0f} ms",
                    (r["us"], r["total_ms"]), textcoords="offset points", xytext=(4, -22),
                    fontsize=6)
    if reported_s is not None:
        ax.axhline(reported_s * 1e3, color="k", ls=":", label=f"reported {reported_s * 1e3:.0f} ms")
    ax.set_xlabel("per-launch overhead (us)")
    ax.set_ylabel("predicted ms per inference")
    lo, hi = min(r["total_ms"] for r in rows), max(r["total_ms"] for r in rows)
    ax.set_title(f"{device}: {lo:.0f}-{hi:.0f} ms over {min(us):g}-{max(us):g} us per launch",
                 fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_suite(record: dict):
    """The GPU suite's figure (`xr0lab.latency.suite`): measured stages beside the prediction for
    the same device; the DiT-loop arms against their roofline bounds; the targets as ratio over
    limit (left of 1 is met)."""
    from xr0lab.plots.figure import new_figure

    fig, axes = new_figure(1, 3, size=(17, 4.4))
    ax0, ax1, ax2 = axes[0]
    preds = record.get("predictions", {})
    ref = record.get("table_device") if record.get("table_device") in preds else "probe"
    if "stages" in record:
        plot_breakdown(record, prediction=ref, ax=ax0)
    else:
        ax0.text(0.5, 0.5, "no whole-inference profile in this record", ha="center",
                 transform=ax0.transAxes)
    arms = {}
    for section, prefix in (("dit_loop", ""), ("dit_loop_compiled", "again: ")):
        for name, t in (record.get(section) or {}).get("arms", {}).items():
            if section == "dit_loop_compiled" and not name.startswith("compiled"):
                name = prefix + name
            arms[name] = t
    if arms:
        names = list(arms)
        y = np.arange(len(names))
        p50 = [arms[n]["p50"] * 1e3 for n in names]
        ax1.barh(y, p50, xerr=[[0] * len(names), [arms[n]["p95"] * 1e3 - v
                                                  for n, v in zip(names, p50)]],
                 color="#55a868", capsize=3)
        for n, v in zip(y, p50):
            ax1.text(v, n, f" {v:.2f}", va="center", fontsize=7)
        bounds = (record.get("dit_loop") or {}).get("bounds", {})
        for (d, b), ls in zip(bounds.items(), (":", "--", "-.")):
            ax1.axvline(b["roofline_s"] * 1e3, color="k", ls=ls,
                        label=f"roofline on {d} {b['roofline_s'] * 1e3:.2f} ms")
        ax1.set_yticks(y, names, fontsize=8)
        ax1.invert_yaxis()
        ax1.set_xscale("log")
        ax1.set_xlabel("DiT loop ms, p50 (whisker p95), log scale")
        ax1.legend(fontsize=7)
    else:
        ax1.text(0.5, 0.5, "no DiT-loop timing in this record", ha="center",
                 transform=ax1.transAxes)
    targets = [t for t in record.get("targets", []) if t["ratio"] is not None]
    if targets:
        labels = [f"{t['target'].split(' within')[0].split(':')[0]}\n{t['detail'].split(':')[0]}"
                  f" [{t['against']}]" for t in targets]
        scaled = [t["ratio"] / t["limit"] for t in targets]
        ax2.barh(range(len(targets)), scaled,
                 color=["#55a868" if t["met"] else "#c44e52" for t in targets])
        ax2.axvline(1.0, color="k", lw=0.8)
        if max(scaled) > 20:  # a far miss would squash every other bar to nothing
            ax2.set_xscale("symlog", linthresh=1.0)
        ax2.set_yticks(range(len(targets)), labels, fontsize=6)
        ax2.invert_yaxis()
        ax2.set_xlabel("ratio / target limit (<= 1 met)")
    else:
        ax2.text(0.5, 0.5, "no targets evaluated", ha="center", transform=ax2.transAxes)
    status = "" if record.get("complete") else " [incomplete run]"
    fig.suptitle(f"{record['preset']} on {record['device']['name']} ({record['dtype']}), random "
                 f"weights{status}", fontsize=10)
    fig.tight_layout()
    return fig
