"""The devices a prediction runs on: peak FLOP/s, memory bandwidth and per-op launch overhead.

`DEVICES` tabulates datasheet figures of the GPUs the project compares; a measured device comes
from `xr0lab.latency.probe` (the "cpu" device is always measured, never tabulated).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class Device:
    """Peak figures of one device.

    peak_flops_bf16: dense matmul FLOP/s at the dtype the workload runs in (bf16 with fp32
    accumulate for GPUs; for the "cpu" probe, the probe's dtype). mem_bandwidth: bytes/s.
    launch_overhead_s: cost of one eager kernel launch / op dispatch. source: where the numbers
    come from.
    """

    name: str
    peak_flops_bf16: float
    mem_bandwidth: float
    launch_overhead_s: float
    source: str

    def __post_init__(self) -> None:
        for field_name in ("peak_flops_bf16", "mem_bandwidth"):
            value = getattr(self, field_name)
            if not value > 0:
                raise ValueError(f"Device.{field_name} must be > 0, got {value}")
        if self.launch_overhead_s < 0:
            raise ValueError(f"Device.launch_overhead_s must be >= 0, got {self.launch_overhead_s}")


# Per-op eager overhead on a GPU host. An assumption, not a datasheet figure: ATen dispatch plus
# cudaLaunchKernel from Python on a desktop CPU is typically 4-10 us per op. `xr0lab profile` on
# the GPU measures the real figure; pass `replace(device, launch_overhead_s=...)` to use it.
GPU_LAUNCH_OVERHEAD_S = 5e-6
_LAUNCH_NOTE = "launch overhead: assumed 5 us/op eager PyTorch (replace with a measured value)"

DEVICES: dict[str, Device] = {
    d.name: d for d in (
        Device("rtx4090", 165.2e12, 1008e9, GPU_LAUNCH_OVERHEAD_S,
               "NVIDIA Ada Lovelace GPU architecture whitepaper (GeForce RTX 4090: 165.2 TFLOP/s "
               "dense FP16/BF16 tensor with FP32 accumulate, 1,008 GB/s GDDR6X); docs/architecture.md §10; "
               + _LAUNCH_NOTE),
        Device("rtx3090", 71e12, 936e9, GPU_LAUNCH_OVERHEAD_S,
               "NVIDIA Ampere GA102 GPU architecture whitepaper (GeForce RTX 3090: 71 TFLOP/s "
               "dense FP16/BF16 tensor with FP32 accumulate, 936 GB/s GDDR6X); " + _LAUNCH_NOTE),
        Device("a100-sxm-80gb", 312e12, 2039e9, GPU_LAUNCH_OVERHEAD_S,
               "NVIDIA A100 Tensor Core GPU datasheet (SXM 80GB: 312 TFLOP/s dense BF16, "
               "2,039 GB/s HBM2e); " + _LAUNCH_NOTE),
        Device("h100-sxm", 989e12, 3350e9, GPU_LAUNCH_OVERHEAD_S,
               "NVIDIA H100 Tensor Core GPU datasheet (SXM: 989 TFLOP/s dense BF16, 3.35 TB/s "
               "HBM3); docs/architecture.md §10; " + _LAUNCH_NOTE),
        Device("h200", 989e12, 4800e9, GPU_LAUNCH_OVERHEAD_S,
               "NVIDIA H200 Tensor Core GPU datasheet (SXM: 989 TFLOP/s dense BF16, 4.8 TB/s "
               "HBM3e); docs/architecture.md §10; " + _LAUNCH_NOTE),
    )
}


def get_device(name: str) -> Device:
    """A device of the table by name ("cpu" is measured: use `probe_cpu`)."""
    if name == "cpu":
        raise KeyError("the 'cpu' device is measured, not tabulated: call probe_cpu(threads=...)")
    try:
        return DEVICES[name]
    except KeyError:
        raise KeyError(f"unknown device {name!r}; tabulated: {', '.join(DEVICES)} "
                       "(and 'cpu' via probe_cpu)") from None


def matching_table_device(name: str) -> Device | None:
    """The tabulated datasheet device whose name matches a CUDA device name, if any.

    >>> matching_table_device("NVIDIA GeForce RTX 4090").name, matching_table_device("cpu")
    ('rtx4090', None)
    """
    key = name.lower().replace(" ", "")
    for needle, dev in (("4090", "rtx4090"), ("3090", "rtx3090"), ("a100", "a100-sxm-80gb"),
                        ("h100", "h100-sxm"), ("h200", "h200")):
        if needle in key:
            return DEVICES[dev]
    return None


def average_devices(devices: Sequence[Device], name: str | None = None) -> Device:
    """The mean of several probes of one device (e.g. before and after a profile)."""
    if not devices:
        raise ValueError("average_devices needs at least one device")
    k = len(devices)
    return Device(name or devices[0].name, sum(d.peak_flops_bf16 for d in devices) / k,
                  sum(d.mem_bandwidth for d in devices) / k,
                  sum(d.launch_overhead_s for d in devices) / k,
                  f"mean of {k} probes; first: {devices[0].source}")
