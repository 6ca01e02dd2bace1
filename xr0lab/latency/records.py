"""Profile records: the JSON-serialisable record of one profile (environment, settings,
measurements, predictions), the tables and summaries read from it, and loading the records
committed under data/.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import platform
from pathlib import Path
from typing import Sequence

import numpy as np

from xr0lab.config import XR0Config
from xr0lab.latency.devices import Device, matching_table_device
from xr0lab.latency.pipeline import Pipeline, workload_of
from xr0lab.latency.roofline import predict
from xr0lab.latency.workload import Workload

SCHEMA = "xr0lab.profile/1"


def environment(device_type: str, dtype: str) -> dict:
    """Device, dtype, threads, library versions and platform of this process."""
    import torch
    import transformers

    import xr0lab

    dev = {"type": device_type, "name": platform.processor() or platform.machine()}
    if device_type == "cuda":
        dev["name"] = torch.cuda.get_device_name()
    return {"device": dev, "dtype": dtype, "threads": torch.get_num_threads(),
            "versions": {"python": platform.python_version(), "torch": torch.__version__,
                         "transformers": transformers.__version__, "xr0lab": xr0lab.__version__,
                         "numpy": np.__version__},
            "platform": platform.platform()}


def predicted_stages(config: XR0Config, workload: Workload,
                     device: Device) -> dict[str, float]:
    """Roofline seconds per stage of `workload` on `device`."""
    return {p.name: p.seconds for p in predict(config, workload, device)}


def make_record(config: XR0Config, pipeline: Pipeline, result: dict, *, settings: dict,
                dtype: str, probe: Device | None) -> dict:
    """A JSON-serialisable profile record: environment, settings, measurements, predictions."""
    env = environment(pipeline.device_type, dtype)
    workload = workload_of(pipeline, config, dtype)
    rec = {"schema": SCHEMA, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(),
           "preset": config.name, "config": dataclasses.asdict(config), **env,
           "settings": settings, "workload": dataclasses.asdict(workload),
           "preprocess_measured": pipeline.preprocess_measured, **result, "predictions": {}}
    if probe is not None:
        rec["probe_device"] = dataclasses.asdict(probe)
        rec["predictions"]["probe"] = predicted_stages(config, workload, probe)
    table = matching_table_device(env["device"]["name"]) if pipeline.device_type == "cuda" \
        else None
    if table is not None:
        rec["predictions"][table.name] = predicted_stages(config, workload, table)
    return rec


def stage_table(record: dict, prediction: str = "probe") -> list[dict]:
    """Rows of (stage, measured p50/p95 ms, predicted ms, predicted / measured), DiT steps kept."""
    pred = record.get("predictions", {}).get(prediction, {})
    rows = []
    for name, st in record["stages"].items():
        p = pred.get(name)
        rows.append({"stage": name, "p50_ms": st["p50"] * 1e3, "p95_ms": st["p95"] * 1e3,
                     "predicted_ms": None if p is None else p * 1e3,
                     "pred_over_measured": None if p is None else p / st["p50"]})
    return rows


def format_stage_table(record: dict, prediction: str = "probe") -> str:
    lines = [f"{'stage':<12} {'p50 ms':>9} {'p95 ms':>9} {'pred ms':>9} {'pred/meas':>9}"]
    for r in stage_table(record, prediction):
        pred = "" if r["predicted_ms"] is None else f"{r['predicted_ms']:9.3f}"
        ratio = "" if r["pred_over_measured"] is None else f"{r['pred_over_measured']:9.2f}"
        lines.append(f"{r['stage']:<12} {r['p50_ms']:9.3f} {r['p95_ms']:9.3f} {pred:>9} {ratio:>9}")
    tot = record["total"]
    pred_total = sum(record.get("predictions", {}).get(prediction, {}).values())
    lines.append(f"{'total':<12} {tot['p50'] * 1e3:9.3f} {tot['p95'] * 1e3:9.3f} "
                 f"{pred_total * 1e3:9.3f} {pred_total / tot['p50']:9.2f}")
    return "\n".join(lines)


def summarize_record(record: dict, prediction: str = "probe") -> str:
    """Stage table, then timers-on/off and speed options when the record has them (a GPU-suite
    record: `xr0lab.latency.suite.format_suite`)."""
    if record.get("suite") == "gpu":
        from xr0lab.latency.suite import format_suite

        return format_suite(record)
    lines = [f"{record['preset']} on {record['device']['name']} ({record['dtype']}, "
             f"{record['threads']} thread(s), torch {record['versions']['torch']})",
             format_stage_table(record, prediction)]
    if "timer_overhead" in record:
        o = record["timer_overhead"]
        lines.append(f"timers on / off (p50, side by side): {o['ratio']:.4f} "
                     f"({o['on_p50_s'] * 1e3:.2f} vs {o['off_p50_s'] * 1e3:.2f} ms); paired "
                     f"ratio p50 {o['paired_ratio_p50']:.4f}, IQR "
                     f"{o['paired_ratio_iqr'][0]:.4f}-{o['paired_ratio_iqr'][1]:.4f}")
    loop = record.get("dit_loop")
    if loop:
        graph = "CUDA graph" if loop["cuda_graph"] else "static shapes, no graph (CPU)"
        lines.append(f"DiT loop: eager {loop['eager_p50_s'] * 1e3:.2f} ms, {graph} "
                     f"{loop['static_p50_s'] * 1e3:.2f} ms (x{loop['static_over_eager']:.2f}); "
                     f"roofline on {loop['roofline_device']} {loop['roofline_s'] * 1e3:.3f} ms, "
                     f"static / roofline = {loop['static_over_roofline']:.1f}")
    for row in record.get("speed_options", []):
        pred = "" if row["predicted_ratio"] is None else f", predicted {row['predicted_ratio']:.2f}"
        first = f", first call {row['first_call_s']:.1f} s" if row["first_call_s"] > 1 else ""
        lines.append(f"{row['option']:<32} {row['p50_ms']:8.2f} ms  ratio {row['ratio']:.2f}"
                     f"{pred}{first}")
    return "\n".join(lines)


GPU_SUITE_COMMAND = "python -m xr0lab profile --preset xr0 --device cuda --suite gpu --out data"


def describe_gpu_profiles(records: Sequence[dict]) -> str:
    """Summaries of GPU records, or how to produce one when there are none."""
    if not records:
        return ("No GPU measurement exists yet: every number above is a prediction or a CPU "
                "measurement.\nOn a CUDA machine (H100/H200-class, under 6 minutes) run\n"
                f"  {GPU_SUITE_COMMAND}\n"
                "(or `bash .ci/gpu-profile`), which writes data/profile_xr0_<gpu>.json and its "
                "plot (random weights: timing only).")
    parts = []
    for rec in records:
        if rec.get("suite") == "gpu":  # its report already sets every stage beside its prediction
            parts.append(summarize_record(rec))
            continue
        others = [k for k in rec.get("predictions", {}) if k != "probe"]
        parts.append(summarize_record(rec))
        parts += [f"-- against datasheet {k}:\n{format_stage_table(rec, k)}" for k in others]
    return "\n\n".join(parts)


class OutputExistsError(FileExistsError):
    """A profile's output file exists: measurements are never replaced without being asked."""


def refuse_overwrite(paths: Sequence[str | Path], *, overwrite: bool = False) -> None:
    """Raise `OutputExistsError` naming every existing path, unless `overwrite`. Called before
    any measurement, so a refusal costs nothing."""
    existing = [str(p) for p in paths if Path(p).exists()]
    if existing and not overwrite:
        raise OutputExistsError(
            f"{', '.join(existing)} already exist{'s' if len(existing) == 1 else ''}: a profile "
            "never replaces recorded measurements silently. Pass --overwrite "
            "(overwrite=True) to replace, or --tag NAME / --out DIR to write beside them.")


def load_profiles(directory: str | Path, *, device_type: str | None = None) -> list[dict]:
    """Every data/profile_*.json record (optionally only one device type, e.g. "cuda")."""
    out = []
    for path in sorted(Path(directory).glob("profile_*.json")):
        rec = json.loads(path.read_text())
        if rec.get("schema") != SCHEMA:
            continue
        if device_type is None or rec["device"]["type"] == device_type:
            rec["path"] = str(path)
            out.append(rec)
    return out

