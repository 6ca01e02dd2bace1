"""Hardware probes: measure this machine's matmul FLOP/s, copy bandwidth and per-op dispatch time
with torch, as a `Device` the roofline can predict on (the measured counterpart of `DEVICES`).
"""

from __future__ import annotations

import platform
import time
from dataclasses import replace

from xr0lab.latency.devices import Device
from xr0lab.latency.opcount import rmsnorm_op


def probe_cpu(threads: int = 1, *, dtype=None, matmul_size: int = 512, copy_mb: int = 128,
              min_time_s: float = 0.2) -> Device:
    """Measure this CPU: matmul FLOP/s, copy bandwidth and per-op dispatch time with torch.

    Runs at `threads` intra-op threads and restores the previous setting afterwards. The copy is
    `copy_mb` MB (larger than typical L3 so it measures memory, not cache); bandwidth counts the
    read and the write. The per-op figure is an eager RMSNorm module on a tiny input divided by
    the kernels this model counts for it: what one modelled op costs beyond its arithmetic,
    module-call and view overhead included. `dtype` defaults to float32 (what CPU presets run).
    """
    import torch

    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        dev = _probe("cpu", dtype or torch.float32, matmul_size, copy_mb, min_time_s)
    finally:
        torch.set_num_threads(previous)
    return replace(dev, source=dev.source.replace("probe(", f"probe_cpu(threads={threads}, "))


def probe_cuda(*, dtype=None, matmul_size: int = 8192, copy_mb: int = 1024,
               min_time_s: float = 0.5) -> Device:
    """The same three measurements on the current CUDA device (bf16 by default). The per-op
    figure is the steady-state rate of back-to-back tiny eager kernels from Python: the launch
    cost an eager, launch-bound stage pays."""
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError("probe_cuda needs a CUDA device; torch.cuda.is_available() is False")
    return _probe("cuda", dtype or torch.bfloat16, matmul_size, copy_mb, min_time_s)


def _probe(device: str, dtype, n: int, copy_mb: int, min_time_s: float) -> Device:
    import torch

    sync = torch.cuda.synchronize if device == "cuda" else None
    with torch.inference_mode():
        a = torch.randn(n, n, dtype=dtype, device=device)
        b = torch.randn(n, n, dtype=dtype, device=device)
        per_mm = _time_call(lambda: torch.mm(a, b), min_time_s, sync)
        numel = copy_mb * 2 ** 20 // 4
        src = torch.randn(numel, device=device)
        dst = torch.empty_like(src)
        per_copy = _time_call(lambda: dst.copy_(src), min_time_s, sync)
        x = torch.ones(1, device=device)
        per_add = _time_call(lambda: torch.add(x, x), min_time_s / 2, sync)
        # The per-op cost an eager model pays is more than a bare op's dispatch: module calls,
        # views and Python glue come with it. Calibrate to the op counts' own counting
        # convention instead: the model's RMSNorm on a tiny input, divided by the kernels
        # `rmsnorm_op` counts for it.
        from xr0lab.model.dit import RMSNorm

        norm = RMSNorm(8).to(device=device, dtype=dtype)
        y = torch.randn(4, 8, device=device, dtype=dtype)
        kernels = rmsnorm_op("probe", 4, 8, 2 if dtype.itemsize == 2 else 4).launches
        per_op = _time_call(lambda: norm(y), min_time_s / 2, sync) / kernels
    if device == "cuda":
        where = torch.cuda.get_device_name()
    else:
        where = platform.processor() or platform.machine()
    return Device(device, 2 * n ** 3 / per_mm, 2 * numel * 4 / per_copy, per_op,
                  f"measured by probe(dtype={str(dtype).split('.')[-1]}, matmul {n}^3, copy "
                  f"{copy_mb} MB) on {where}, torch {torch.__version__}; per-op = eager RMSNorm "
                  f"module / its {kernels} modelled kernels = {per_op * 1e6:.2f} us (a bare "
                  f"1-element add: {per_add * 1e6:.2f} us)")


def _time_call(fn, min_time_s: float, sync=None, rounds: int = 5) -> float:
    """Seconds per call: warm up, then `rounds` rounds of min_time_s / rounds each; the median
    round (not the best: on a shared machine the best round is a calm moment the timed runs do
    not get). `sync` (e.g. torch.cuda.synchronize) closes each round so queued device work is
    counted."""
    sync = sync or (lambda: None)
    for _ in range(3):
        fn()
    sync()
    per_round = []
    for _ in range(rounds):
        n, start = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            if n % 8 == 0 or time.perf_counter() - start >= min_time_s / rounds:
                sync()
                elapsed = time.perf_counter() - start
                if elapsed >= min_time_s / rounds:
                    break
        per_round.append(elapsed / n)
    return sorted(per_round)[rounds // 2]
