"""The GPU suite's analysis: what is derived from its measurements (predicted/measured ratios,
roofline bounds, the launch-overhead refit, the RTX 4090 range, the targets) and its text report.

`xr0lab.latency.suite` measures and calls `derive` at every write; `format_suite` prints a record.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from xr0lab.config import XR0Config
from xr0lab.latency.devices import Device, get_device
from xr0lab.latency.opcount import stage_costs
from xr0lab.latency.records import stage_table
from xr0lab.latency.roofline import (StagePrediction, fit_launch_overhead, launch_overhead_sweep,
                                     predict, predict_stage, roofline_seconds)

SUITE = "gpu"  # the record's "suite" field
# -- derived sections ----------------------------------------------------------------------------

def _devices(rec: dict) -> dict[str, Device]:
    """The devices predictions run on: "probe" (mean of the probes) and the datasheet entry
    matching the measured device, if any."""
    out = {}
    if rec.get("probe_device"):
        out["probe"] = Device(**rec["probe_device"])
    table = rec.get("table_device")
    if table:
        out[table] = get_device(table)
    return out


def _combined(preds: Sequence[StagePrediction], name: str) -> StagePrediction:
    """Several stages' predictions as one (their sums), e.g. the N DiT steps as "the loop"."""
    first = preds[0]
    total = dict(flops=sum(p.flops for p in preds), bytes=sum(p.bytes for p in preds),
                 launches=sum(p.launches for p in preds),
                 compute_s=sum(p.compute_s for p in preds),
                 memory_s=sum(p.memory_s for p in preds),
                 launch_s=sum(p.launch_s for p in preds), seconds=sum(p.seconds for p in preds))
    return dataclasses.replace(first, name=name, **total)


def derive(rec: dict, config: XR0Config) -> None:
    """Recompute the record's derived sections from its measurements (in place)."""
    from xr0lab.latency.workload import Workload

    devices = _devices(rec)
    inference = rec.get("inference", {})
    preds_by_entry: dict[str, dict[str, list[StagePrediction]]] = {}
    for key, entry in inference.items():
        workload = Workload(**{**entry["workload"], "image_hw": tuple(entry["workload"]
                                                                      ["image_hw"])})
        preds_by_entry[key] = {d: predict(config, workload, dev) for d, dev in devices.items()}
        entry["predictions"] = {d: {p.name: p.seconds for p in ps}
                                for d, ps in preds_by_entry[key].items()}
        entry["roofline_s"] = {d: sum(roofline_seconds(p) for p in ps)
                               for d, ps in preds_by_entry[key].items()}
        entry["comparison"] = {d: stage_table(entry, d) for d in devices}
        entry["total_over_roofline"] = {d: entry["total"]["p50"] / r
                                        for d, r in entry["roofline_s"].items() if r > 0}
        entry["total_over_prediction"] = {
            d: entry["total"]["p50"] / sum(p.seconds for p in ps)
            for d, ps in preds_by_entry[key].items()}
    main = f"{rec['settings']['views'][0]} views"
    if main in inference:  # the top-level stage record `summarize_record` and plots read
        for k in ("workload", "warmup", "stages", "total", "predictions", "comparison"):
            rec[k] = inference[main][k]
    loop_preds = {}
    if main in preds_by_entry:
        loop_preds = {d: _combined([p for p in ps if p.name.startswith("dit_step_")], "dit_loop")
                      for d, ps in preds_by_entry[main].items()}
        fused = {d: sum(roofline_seconds(predict_stage(st, dev, "elementwise"))
                        for st in _dit_stage_costs(config, inference[main]))
                 for d, dev in devices.items()}
        bounds = {d: {"roofline_s": roofline_seconds(p), "fused_roofline_s": fused[d],
                      "eager_prediction_s": p.seconds, "launches": p.launches}
                  for d, p in loop_preds.items()}
        for section in ("dit_loop", "dit_loop_compiled"):
            loop = rec.get(section)
            if not loop:
                continue
            loop["bounds"] = bounds
            for arm, t in loop["arms"].items():
                bound_key = "fused_roofline_s" if arm.startswith("compiled") else "roofline_s"
                t["over_roofline"] = {d: t["p50"] / b[bound_key] for d, b in bounds.items()
                                      if b[bound_key] > 0}
                t["bound_used"] = bound_key
        rec["launch_fit"] = _launch_fits(rec, preds_by_entry[main], loop_preds)
    rec["rtx4090"] = _rtx4090(rec, config)
    rec["targets"] = _targets(rec)


def _dit_stage_costs(config: XR0Config, entry: dict):
    from xr0lab.latency.workload import Workload

    w = Workload(**{**entry["workload"], "image_hw": tuple(entry["workload"]["image_hw"])})
    return [s for s in stage_costs(config, w) if s.name.startswith("dit_step_")]


def _launch_fits(rec: dict, preds: dict[str, list[StagePrediction]],
                 loop_preds: dict[str, StagePrediction]) -> dict:
    """Per device: the launch overhead refitted to the DiT steps of the main profile, to all its
    stages, and to the eager static DiT loop (`fit_launch_overhead`)."""
    stages = {k: v["p50"] for k, v in rec["stages"].items()}
    out: dict[str, dict] = {}
    for d, ps in preds.items():
        dit = [p for p in ps if p.name.startswith("dit_step_")]
        fits = {"dit_steps": fit_launch_overhead(stages, dit),
                "all_stages": fit_launch_overhead(stages, [p for p in ps if p.launches])}
        loop = rec.get("dit_loop", {}).get("arms", {}).get("eager_static")
        if loop:
            fits["dit_loop_eager_static"] = fit_launch_overhead({"dit_loop": loop["p50"]},
                                                                [loop_preds[d]])
        out[d] = fits
    return out


def _rtx4090(rec: dict, config: XR0Config) -> dict:
    """The RTX 4090 prediction of the released workload over launch overheads: the assumed range
    and the overheads refitted here (a different host CPU: an estimate, not a 4090 measurement)."""
    assumed = (0.0, 2.0, 5.0, 10.0)
    refits = {}
    for d, fits in rec.get("launch_fit", {}).items():
        for name, fit in fits.items():
            refits[f"{d}/{name}"] = fit["launch_overhead_s"] * 1e6
    # always the full-size model on the released workload, whatever preset this run profiled
    rows = launch_overhead_sweep("rtx4090", assumed + tuple(refits.values()))
    return {"assumed": rows[:len(assumed)],
            "refit": [{"fit": name, **row} for name, row in zip(refits, rows[len(assumed):])],
            "range_ms": [min(r["total_ms"] for r in rows[:len(assumed)]),
                         max(r["total_ms"] for r in rows[:len(assumed)])]}


def _targets(rec: dict) -> list[dict]:
    """The issue's targets as ratios, side by side, each against every device predicted on."""
    rows = []
    note = None if rec["device"]["type"] == "cuda" else "not a GPU run: no claim"

    def add(target, ratio, limit, against, detail):
        rows.append({"target": target, "ratio": ratio, "limit": limit, "against": against,
                     "met": None if ratio is None else bool(ratio <= limit), "detail": detail,
                     **({"note": note} if note else {})})

    loop = rec.get("dit_loop")
    if loop:
        arm = "cuda_graph" if "cuda_graph" in loop["arms"] else "eager_static"
        for d, r in loop["arms"][arm].get("over_roofline", {}).items():
            add("DiT loop with static shapes within 2x of its roofline bound", r, 2.0, d,
                f"{arm} p50 / roofline")
    for key, entry in rec.get("inference", {}).items():
        for d, r in entry.get("total_over_roofline", {}).items():
            add("whole inference within 1.5x of the sum of stage rooflines", r, 1.5, d,
                f"{key}: total p50 / sum of stage rooflines")
    hooks = rec.get("hook_overhead")
    if hooks:
        for level, r in hooks["ratios"]["noop_over_plain"].items():
            add("hooks attached, caching nothing: overhead under 1%", r - 1.0, 0.01, "plain",
                f"{level}: median noop / plain - 1")
    return rows


def json_default(obj):
    """`json.dumps(default=...)`: numpy scalars as numbers, tuples as lists, anything else as str."""
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, tuple):
        return list(obj)
    return str(obj)


# -- the record around the parts -----------------------------------------------------------------


# -- the text report ---------------------------------------------------------------------------

def format_suite(rec: dict) -> str:
    """The suite's report: parts, stage table against the same device's prediction, DiT loop arms
    against their bounds, the targets side by side, the launch refit and the RTX 4090 range."""
    from xr0lab.latency.records import format_stage_table

    dev = rec["device"]
    lines = [f"{rec['preset']} on {dev['name']} ({rec['dtype']}, torch "
             f"{rec['versions']['torch']}, transformers {rec['versions']['transformers']}"
             + (f", driver {dev.get('driver')}" if dev.get("driver") else "") + ")"
             + ("" if rec.get("complete") else "  [INCOMPLETE]")]
    for name, part in rec["parts"].items():
        extra = part.get("reason") or part.get("error") or ""
        lines.append(f"  {name:<20} {part['status']:<8} {part.get('seconds', 0):7.1f} s  {extra}")
    refs = [d for d in (rec.get("table_device"), "probe") if d]
    for key, entry in rec.get("inference", {}).items():
        for d in refs:
            if d in entry.get("predictions", {}):
                lines += [f"\n{key} against {d}:", format_stage_table(entry, d)]
    for section, title in (("dit_loop", "DiT loop"), ("dit_loop_compiled", "DiT loop, compiled")):
        loop = rec.get(section)
        if not loop:
            continue
        lines.append(f"\n{title} ({loop.get('num_steps', '')} steps), p50 / p95 / p99 ms, "
                     "x roofline bound:")
        for arm, t in loop["arms"].items():
            ratio = ", ".join(f"{d} x{r:.1f}" for d, r in t.get("over_roofline", {}).items())
            lines.append(f"  {arm:<15} {t['p50'] * 1e3:8.3f} {t['p95'] * 1e3:8.3f} "
                         f"{t['p99'] * 1e3:8.3f}   {ratio}")
        if section == "dit_loop_compiled":
            lines.append(f"  compile (first call) {loop['compile_s']:.1f} s")
    targets = rec.get("targets", [])
    if targets:
        lines.append("\ntargets (ratio vs limit, side by side in this run):")
        for t in targets:
            met = {True: "met", False: "NOT met", None: "n/a"}[t["met"]]
            lines.append(f"  {t['target']:<58} {t['ratio']:8.3f} <= {t['limit']:<5g} "
                         f"[{t['against']}] {met}  ({t['detail']})" + (f" {t['note']}"
                                                                       if "note" in t else ""))
    for d, fits in rec.get("launch_fit", {}).items():
        lines.append(f"launch overhead refit on {d}: " + ", ".join(
            f"{k} {f['launch_overhead_s'] * 1e6:.2f} us" for k, f in fits.items()))
    r4090 = rec.get("rtx4090")
    if r4090:
        lines.append("RTX 4090 prediction (released workload) by launch overhead: " + ", ".join(
            f"{r['us']:g} us {r['total_ms']:.1f} ms" for r in r4090["assumed"]))
        if r4090["refit"]:
            lines.append("  with the refits: " + ", ".join(
                f"{r['fit']} {r['us']:.2f} us -> {r['total_ms']:.1f} ms" for r in r4090["refit"]))
    peak = rec.get("peak_memory", {})
    if peak.get("status") == "ok":
        lines.append(f"peak device memory {peak['max_bytes'] / 2 ** 30:.2f} GiB")
    rt = rec.get("realtime")
    if rt and rt.get("latency"):
        lines.append(f"RealTimeRunner at {rt['rate_hz']:g} Hz, {rt['ticks']} ticks: "
                     f"{len(rt['chunks'])} chunks, latency p50 {rt['latency']['p50'] * 1e3:.1f} "
                     f"ms, p99 {rt['latency']['p99'] * 1e3:.1f} ms, delay "
                     f"p50 {rt['delay_ticks']['p50']:g} ticks, late ticks {rt['late_ticks']}")
    return "\n".join(lines)


def is_suite_record(rec: dict) -> bool:
    return rec.get("suite") == SUITE
