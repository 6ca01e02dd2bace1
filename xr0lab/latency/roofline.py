"""The roofline: a prediction of each stage's time on a device from its op counts, and the
breakdowns and tables made from those predictions.

Time per stage = sum over ops of max(flops / peak, bytes / bandwidth) + launches * overhead.
The per-op maximum is never smaller than the stage-level max(flops/peak, bytes/bw) and is the
honest choice when a stage mixes compute-bound GEMMs with memory-bound elementwise kernels.

Where an ideal roofline is optimistic (read these before trusting a prediction):
- Small GEMMs and attention never reach peak: the DiT's GEMMs have M = 32 rows, which is below a
  tensor-core tile in one dimension, and its attention has 32 queries; such kernels run at a few
  percent of peak and are latency-bound, which a roofline cannot express.
- Launch overhead is a single per-op constant; in reality CPU dispatch and GPU execution overlap
  for large kernels (the additive term is pessimistic there) and Python module calls and hook
  points add CPU time that is not a kernel (the term is optimistic there).
- No fusion is assumed, but the released system runs FlashAttention-2 (fused) and may use
  compiled or graph-captured code that removes most launches; conversely every unfused
  elementwise kernel is counted at DRAM speed although a 72 MB L2 holds most activations here.
- Peak figures are datasheet numbers; sustained GEMM throughput is typically 60-85 % of them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal, Sequence

from xr0lab.config import XR0Config, preset
from xr0lab.latency.devices import DEVICES, Device, get_device
from xr0lab.latency.opcount import Op, OpKind, StageCost, stage_costs
from xr0lab.latency.speed_options import workload_variants
from xr0lab.latency.workload import RELEASED, Workload

Bound = Literal["compute", "memory", "launch"]

REPORTED_RTX4090_S = 0.080  # docs/architecture.md §10: 80 ms per inference, bf16, FlashAttention-2


@dataclass(frozen=True)
class StagePrediction:
    """Predicted time of one stage on one device and what bounds it."""

    name: str
    device: str
    flops: float
    bytes: float
    launches: int
    compute_s: float  # flops / peak
    memory_s: float  # bytes / bandwidth
    launch_s: float  # launches * overhead
    seconds: float  # sum over ops of max(compute, memory) + launch_s
    bound: Bound

    def as_dict(self) -> dict:
        return dict(self.__dict__)


Fusion = Literal["none", "elementwise"]
_FUSABLE: tuple[OpKind, ...] = ("norm", "elementwise", "copy")


def fuse(stage: StageCost, fusion: Fusion) -> StageCost:
    """The stage as a fusing compiler would leave it.

    "none": as eager PyTorch runs it. "elementwise": every norm, elementwise and copy op folded
    into a neighbouring GEMM or attention kernel (roughly what torch.compile achieves): those ops
    contribute neither launches nor extra memory traffic. Host ops are kept.
    """
    if fusion == "none" or not stage.ops:
        return stage
    if fusion != "elementwise":
        raise ValueError(f"fusion must be 'none' or 'elementwise', got {fusion!r}")
    return StageCost.from_ops(stage.name, [o for o in stage.ops if o.kind not in _FUSABLE])


def predict_stage(stage: StageCost, device: Device, fusion: Fusion = "none") -> StagePrediction:
    stage = fuse(stage, fusion)
    peak, bw = device.peak_flops_bf16, device.mem_bandwidth
    ops = stage.ops or (Op(stage.name, "elementwise", stage.flops, stage.bytes, stage.launches),)
    compute_bound = memory_bound = 0.0
    for op in ops:
        c, m = op.flops / peak, op.bytes / bw
        if c >= m:
            compute_bound += c
        else:
            memory_bound += m
    launch_s = stage.launches * device.launch_overhead_s
    terms = {"compute": compute_bound, "memory": memory_bound, "launch": launch_s}
    bound: Bound = max(terms, key=terms.get)  # type: ignore[arg-type]
    return StagePrediction(stage.name, device.name, stage.flops, stage.bytes, stage.launches,
                           stage.flops / peak, stage.bytes / bw, launch_s,
                           compute_bound + memory_bound + launch_s, bound)


def predict(config: XR0Config, workload: Workload, device: Device, *,
            fusion: Fusion = "none") -> list[StagePrediction]:
    """Roofline time of every stage of `workload` on `device` (see `fuse` for `fusion`)."""
    return [predict_stage(st, device, fusion) for st in stage_costs(config, workload)]


def stage_group(name: str) -> str:
    """The stage's group for compact breakdowns: every "dit_step_k" is "dit", others themselves."""
    return "dit" if name.startswith("dit_step_") else name


def group_stages(predictions: Sequence[StagePrediction]) -> dict[str, float]:
    """Seconds per stage with the DiT steps summed into "dit" (for a compact breakdown)."""
    out: dict[str, float] = {}
    for p in predictions:
        key = stage_group(p.name)
        out[key] = out.get(key, 0.0) + p.seconds
    return out


def format_breakdown(predictions: Sequence[StagePrediction], *,
                     reported_s: float | None = None) -> str:
    """A text table: per stage GFLOP, MB, launches, compute/memory/launch ms, total, bound."""
    lines = [f"{'stage':<12} {'GFLOP':>9} {'MB':>9} {'launch':>7} {'comp ms':>8} {'mem ms':>8} "
             f"{'lnch ms':>8} {'pred ms':>8}  bound"]
    for p in predictions:
        lines.append(f"{p.name:<12} {p.flops / 1e9:9.2f} {p.bytes / 1e6:9.1f} {p.launches:7d} "
                     f"{p.compute_s * 1e3:8.3f} {p.memory_s * 1e3:8.3f} {p.launch_s * 1e3:8.3f} "
                     f"{p.seconds * 1e3:8.3f}  {p.bound}")
    total = total_seconds(predictions)
    lines.append(f"{'total':<12} {sum(p.flops for p in predictions) / 1e9:9.2f} "
                 f"{sum(p.bytes for p in predictions) / 1e6:9.1f} "
                 f"{sum(p.launches for p in predictions):7d} {'':>8} {'':>8} {'':>8} "
                 f"{total * 1e3:8.3f}")
    if reported_s is not None:
        lines.append(f"reported {reported_s * 1e3:.1f} ms; predicted / reported = "
                     f"{total / reported_s:.2f}")
    return "\n".join(lines)


def total_seconds(predictions: Sequence[StagePrediction]) -> float:
    return sum(p.seconds for p in predictions)


def speed_option_table(config: XR0Config, workload: Workload, device: Device
                       ) -> list[tuple[str, float, float]]:
    """(label, predicted seconds, ratio to baseline) for each speed option of the workload
    (`xr0lab.latency.speed_options.workload_variants`), plus the fused (compiled) variant of the
    baseline."""
    base = total_seconds(predict(config, workload, device))
    rows = [(label, t, t / base) for label, t in (
        (label, total_seconds(predict(config, w, device)))
        for label, w in workload_variants(workload, config).items())]
    fused = total_seconds(predict(config, workload, device, fusion="elementwise"))
    rows.append(("elementwise ops fused (compile)", fused, fused / base))
    return rows


def released_breakdown(device: str | Device = "rtx4090",
                       config: XR0Config | None = None) -> list[StagePrediction]:
    """The released configuration (xr0 preset, RELEASED workload) on a device."""
    dev = get_device(device) if isinstance(device, str) else device
    return predict(config or preset("xr0"), RELEASED, dev)


def released_report(device: str | Device = "rtx4090", *,
                    launch_overhead_s: float | None = None) -> str:
    """The predicted breakdown of the released configuration on a device (against the reported
    80 ms on the RTX 4090), its sensitivity to the launch overhead, the speed options, and the
    same prediction on every tabulated device. `launch_overhead_s` overrides the device's."""
    dev = get_device(device) if isinstance(device, str) else device
    if launch_overhead_s is not None:
        dev = replace(dev, launch_overhead_s=launch_overhead_s)
    cfg = preset("xr0")
    s = RELEASED.resolve(cfg)
    preds = predict(cfg, RELEASED, dev)
    overhead_ms = {us: total_seconds(predict(cfg, RELEASED, replace(
        dev, launch_overhead_s=us * 1e-6))) * 1e3 for us in (0, 2, 5, 10)}
    rows = speed_option_table(cfg, RELEASED, dev)
    return "\n".join([
        f"released workload: {s.views} views x {s.tokens_per_view} tokens + {s.text_tokens} "
        f"text = L {s.prompt_length}; chunk {s.chunk_length}; {s.num_steps} steps; bf16",
        f"device {dev.name}: {dev.source}\n",
        format_breakdown(preds, reported_s=REPORTED_RTX4090_S if dev.name == "rtx4090"
                         else None),
        "\nsensitivity (total ms): launch overhead "
        + ", ".join(f"{us:g} us {ms:.1f}" for us, ms in overhead_ms.items()),
        "speed options (predicted ms, ratio): "
        + "; ".join(f"{label} {t * 1e3:.1f} ({r:.2f})" for label, t, r in rows),
        "\nall devices (ms): " + ", ".join(
            f"{name} {total_seconds(predict(cfg, RELEASED, d)) * 1e3:.1f}"
            for name, d in DEVICES.items()),
    ])


def roofline_seconds(prediction: StagePrediction) -> float:
    """The stage's roofline bound alone: sum over ops of max(compute, memory), no launches."""
    return prediction.seconds - prediction.launch_s


def fit_launch_overhead(measured_s: dict[str, float],
                        predictions: Sequence[StagePrediction]) -> dict:
    """The per-launch overhead that best explains measured stage times given their op counts.

    Model: measured_i = roofline_i + launches_i * overhead. Least squares over the stages named
    in both `measured_s` (seconds, e.g. p50s) and `predictions` (one device's, whose roofline
    terms are kept): overhead = sum n_i (m_i - r_i) / sum n_i^2, clipped at 0 (a stage faster
    than its roofline says the peaks are wrong, not that launches are free). Returns the fit,
    the stages used and the relative residual of each stage under it.
    """
    rows = [(p.name, measured_s[p.name], roofline_seconds(p), p.launches)
            for p in predictions if p.name in measured_s and p.launches > 0]
    if not rows:
        raise ValueError("fit_launch_overhead: no stage is both measured and predicted with "
                         f"launches (measured {sorted(measured_s)}, predicted "
                         f"{[p.name for p in predictions]})")
    num = sum(n * (m - r) for _, m, r, n in rows)
    den = sum(n * n for *_, n in rows)
    overhead = max(0.0, num / den)
    return {"launch_overhead_s": overhead, "device": predictions[0].device,
            "stages": [name for name, *_ in rows],
            "measured_s": sum(m for _, m, _, _ in rows),
            "roofline_s": sum(r for _, _, r, _ in rows),
            "launches": sum(n for *_, n in rows),
            "relative_residual": {name: (r + n * overhead - m) / m for name, m, r, n in rows}}


def launch_overhead_sweep(device: str | Device = "rtx4090", overheads_us: Sequence[float] = (
        0.0, 2.0, 5.0, 10.0), *, config: XR0Config | None = None,
        workload: Workload = RELEASED) -> list[dict]:
    """The predicted total (and DiT share) of `workload` on `device` at each per-launch overhead:
    the prediction's uncertainty over its least-known input. One row per overhead: us, total_ms,
    dit_ms, launch_ms (the launch term alone), bound (what bounds the total)."""
    dev = get_device(device) if isinstance(device, str) else device
    cfg = config or preset("xr0")
    rows = []
    for us in overheads_us:
        if us < 0:
            raise ValueError(f"launch overheads must be >= 0 us, got {us}")
        preds = predict(cfg, workload, replace(dev, launch_overhead_s=us * 1e-6))
        launch = sum(p.launch_s for p in preds)
        total = total_seconds(preds)
        rows.append({"us": float(us), "total_ms": total * 1e3,
                     "dit_ms": group_stages(preds).get("dit", 0.0) * 1e3,
                     "launch_ms": launch * 1e3,
                     "bound": "launch" if launch > total - launch else "roofline"})
    return rows
