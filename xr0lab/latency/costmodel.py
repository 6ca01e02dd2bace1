"""An analytic cost model of one XR-0 inference: FLOPs, bytes moved and kernel launches per stage,
and a roofline prediction of each stage's time on a table of devices.

Stages (the same names `xr0lab.latency.profiling` times):
  preprocess  images -> patches, prompt tensors to the device
  vision      Qwen3-VL vision tower: patch embed, blocks, merger, deepstack mergers
  prefill     language model over the prompt: every layer up to the last one the DiT reads
  handoff     what the DiT needs from the prefill: positions, rotary tables, mask, state token
  dit_step_k  one network evaluation of the flow ODE (k = 0 .. num_steps - 1)
  postprocess x -> actions on the host

Conventions (the usual ones of FLOP tables, so numbers compare with published counts):
- A linear layer of M tokens, K inputs, N outputs costs 2*M*K*N FLOPs; its bias add is fused
  into the GEMM epilogue and not counted as FLOPs. Attention counts its two matmuls
  (QK^T and PV: 4 * heads * query * key * head_dim) plus ~5 FLOPs per score for the softmax.
- Bytes assume no fusion and no cache reuse between kernels: every kernel reads its inputs from
  and writes its outputs to device memory. Weights are read once per use.
- Launch counts follow the eager PyTorch code path op by op (transformers 5.x
  `modeling_qwen3_vl`, `xr0lab.model.dit`, `xr0lab.model.expert`); views and reshapes of contiguous
  tensors launch nothing.
- Time per stage = sum over ops of max(flops / peak, bytes / bandwidth) + launches * overhead.
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

import platform
import time
from dataclasses import dataclass, replace
from typing import Literal, Sequence

from xr0lab.config import XR0Config, preset

Bound = Literal["compute", "memory", "launch"]
OpKind = Literal["linear", "attention", "norm", "elementwise", "copy", "host"]

REPORTED_RTX4090_S = 0.080  # spec section 10: 80 ms per inference, bf16, FlashAttention-2


# ---------------------------------------------------------------------------------------------
# Devices
# ---------------------------------------------------------------------------------------------
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
               "dense FP16/BF16 tensor with FP32 accumulate, 1,008 GB/s GDDR6X); spec section 10; "
               + _LAUNCH_NOTE),
        Device("rtx3090", 71e12, 936e9, GPU_LAUNCH_OVERHEAD_S,
               "NVIDIA Ampere GA102 GPU architecture whitepaper (GeForce RTX 3090: 71 TFLOP/s "
               "dense FP16/BF16 tensor with FP32 accumulate, 936 GB/s GDDR6X); " + _LAUNCH_NOTE),
        Device("a100-sxm-80gb", 312e12, 2039e9, GPU_LAUNCH_OVERHEAD_S,
               "NVIDIA A100 Tensor Core GPU datasheet (SXM 80GB: 312 TFLOP/s dense BF16, "
               "2,039 GB/s HBM2e); " + _LAUNCH_NOTE),
        Device("h100-sxm", 989e12, 3350e9, GPU_LAUNCH_OVERHEAD_S,
               "NVIDIA H100 Tensor Core GPU datasheet (SXM: 989 TFLOP/s dense BF16, 3.35 TB/s "
               "HBM3); spec section 10; " + _LAUNCH_NOTE),
        Device("h200", 989e12, 4800e9, GPU_LAUNCH_OVERHEAD_S,
               "NVIDIA H200 Tensor Core GPU datasheet (SXM: 989 TFLOP/s dense BF16, 4.8 TB/s "
               "HBM3e); spec section 10; " + _LAUNCH_NOTE),
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


def average_devices(devices: Sequence[Device], name: str | None = None) -> Device:
    """The mean of several probes of one device (e.g. before and after a profile)."""
    if not devices:
        raise ValueError("average_devices needs at least one device")
    k = len(devices)
    return Device(name or devices[0].name, sum(d.peak_flops_bf16 for d in devices) / k,
                  sum(d.mem_bandwidth for d in devices) / k,
                  sum(d.launch_overhead_s for d in devices) / k,
                  f"mean of {k} probes; first: {devices[0].source}")


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
        # views and Python glue come with it. Calibrate to this module's own counting
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


# ---------------------------------------------------------------------------------------------
# Workloads
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Workload:
    """What one inference processes. `None` fields take the config's value.

    image_hw: each view's size after resizing (multiples of patch * merge = 32 px; see
      `xr0lab.io.processor.smart_resize`).
    text_tokens: prompt tokens that are not image tokens (template, view headers, vision
      start/end markers, instruction).
    vlm_layers: run a VLM truncated to this many layers (the DiT then pairs the last dit_layers
      of those). Because the DiT reads the *last* layers, the prefill must run every VLM layer;
      only truncating the VLM itself shortens it (a different model: needs retraining).
    dit_layers: DiT depth (fewer layers = pair fewer of the VLM's last layers).
    dtype_bytes: 2 for bf16/fp16, 4 for fp32.
    lm_head_tokens: positions whose logits are computed (0: the DiT needs the cache, not logits;
      xr0lab's prefill skips the head).
    copy_context: materialise the paired K/V as a new contiguous buffer at hand-off (needed when
      VLM and DiT sit on different devices or for static CUDA-graph inputs; xr0lab hands the
      cache tensors over without a copy).
    """

    name: str = "custom"
    views: int = 3
    image_hw: tuple[int, int] = (256, 320)
    text_tokens: int = 64
    chunk_length: int | None = None
    num_steps: int | None = None
    vlm_layers: int | None = None
    dit_layers: int | None = None
    batch: int = 1
    dtype_bytes: int = 2
    lm_head_tokens: int = 0
    copy_context: bool = False

    def __post_init__(self) -> None:
        for name in ("views", "batch", "dtype_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"Workload.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("text_tokens", "lm_head_tokens"):
            if getattr(self, name) < 0:
                raise ValueError(f"Workload.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("chunk_length", "num_steps", "vlm_layers", "dit_layers"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"Workload.{name} must be >= 1 or None, got {value}")
        if self.dtype_bytes not in (2, 4):
            raise ValueError(f"Workload.dtype_bytes must be 2 (bf16) or 4 (fp32), "
                             f"got {self.dtype_bytes}")

    def resolve(self, config: XR0Config) -> "Shapes":
        """Concrete sizes for this config; raises ValueError naming what does not fit."""
        v = config.vlm
        px = v.pixels_per_token
        h, w = self.image_hw
        if h % px or w % px or h < px or w < px:
            raise ValueError(f"Workload.image_hw {self.image_hw} must be positive multiples of "
                             f"patch_size * spatial_merge_size = {px} px "
                             "(xr0lab.io.processor.smart_resize gives valid sizes)")
        n_vlm = self.vlm_layers or v.num_layers
        n_dit = self.dit_layers or config.dit.num_layers
        if n_vlm > v.num_layers:
            raise ValueError(f"Workload.vlm_layers ({n_vlm}) exceeds the config's "
                             f"vlm.num_layers ({v.num_layers})")
        if n_dit > n_vlm:
            raise ValueError(f"Workload.dit_layers ({n_dit}) exceeds the VLM layers run "
                             f"({n_vlm}): each DiT layer reads one of the last VLM layers")
        grid_h, grid_w = h // v.patch_size, w // v.patch_size
        patches = grid_h * grid_w  # one temporal patch: an image is its frame repeated twice
        tokens = patches // v.spatial_merge_size ** 2
        T = self.chunk_length or config.action.chunk_length
        return Shapes(batch=self.batch, views=self.views, patches_per_view=patches,
                      tokens_per_view=tokens, text_tokens=self.text_tokens,
                      prompt_length=self.views * tokens + self.text_tokens, chunk_length=T,
                      dit_tokens=2 + T, num_steps=self.num_steps or config.flow.num_steps,
                      vlm_layers=n_vlm, dit_layers=n_dit, dtype_bytes=self.dtype_bytes)


@dataclass(frozen=True)
class Shapes:
    """A workload resolved against a config: every size the op counts need."""

    batch: int
    views: int
    patches_per_view: int
    tokens_per_view: int
    text_tokens: int
    prompt_length: int  # L
    chunk_length: int  # T
    dit_tokens: int  # S = 2 + T (sink, state, actions)
    num_steps: int
    vlm_layers: int
    dit_layers: int
    dtype_bytes: int

    @property
    def patches(self) -> int:
        return self.views * self.patches_per_view

    @property
    def visual_tokens(self) -> int:
        return self.views * self.tokens_per_view


# The released configuration: 3 views, 30-action chunk, 5 Euler steps, bf16 (spec sections 9-10).
# 256x320 is what Qwen's resize (`processor.smart_resize`) makes of a 480x640 camera under the
# 90,000 px cap: 80 tokens a view. (A 90,000 px cap allows at most 87 tokens; the released
# setups' camera sizes are not published.) Text: the released template is ~50 tokens with 3
# views (headers, vision start/end markers, chat tokens, "/no_cot", "<cot></cot>") plus a
# ~12-token instruction; so L = 3 * 80 + 64 = 304, the spec's "~300 prompt tokens".
RELEASED = Workload(name="released", views=3, image_hw=(256, 320), text_tokens=64,
                    chunk_length=30, num_steps=5, dtype_bytes=2)


def whole_tokens(config: XR0Config, height: int, width: int) -> tuple[int, int]:
    """(height, width) snapped down to whole visual tokens (multiples of
    `vlm.pixels_per_token`), at least one token each way: a valid `Workload.image_hw`."""
    px = config.vlm.pixels_per_token
    return max(px, height // px * px), max(px, width // px * px)


# ---------------------------------------------------------------------------------------------
# Ops and stages
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Op:
    """One kernel (or a few, `launches`) of the eager code path. `params`: weight elements read
    (for linear ops, in_features * out_features of the module named `name`)."""

    name: str
    kind: OpKind
    flops: float
    bytes: float
    launches: int = 1
    params: int = 0


@dataclass(frozen=True)
class StageCost:
    """Totals of one stage; `ops` holds the per-op breakdown when the model produced it."""

    name: str
    flops: float
    bytes: float
    launches: int
    ops: tuple[Op, ...] = ()

    @classmethod
    def from_ops(cls, name: str, ops: Sequence[Op]) -> "StageCost":
        ops = tuple(ops)
        return cls(name, sum(o.flops for o in ops), sum(o.bytes for o in ops),
                   sum(o.launches for o in ops), ops)

    def flops_of(self, kind: OpKind) -> float:
        return sum(o.flops for o in self.ops if o.kind == kind)

    def renamed(self, name: str) -> "StageCost":
        return replace(self, name=name)


def linear_op(name: str, tokens: int, in_features: int, out_features: int, *, bias: bool,
              dtype_bytes: int = 2) -> Op:
    """Y (M, N) = X (M, K) @ W (K, N) [+ b]: 2MKN FLOPs; reads X, W, b, writes Y once.

    >>> linear_op("x", 4, 8, 16, bias=False).flops, linear_op("x", 4, 8, 16, bias=False).bytes
    (1024, 448)
    """
    m, k, n = tokens, in_features, out_features
    elems = m * k + k * n + m * n + (n if bias else 0)
    return Op(name, "linear", 2 * m * k * n, elems * dtype_bytes, 1, params=k * n)


def attention_op(name: str, *, batch: int, heads: int, kv_heads: int, queries: int, keys: int,
                 head_dim: int, dtype_bytes: int = 2, causal: bool = False,
                 mask_bytes: int = 0, launches: int = 1) -> Op:
    """A fused (flash / memory-efficient) attention kernel: QK^T and PV matmuls, softmax.

    Causal self-attention (queries == keys) computes the lower triangle only. Reads Q, K, V (K/V
    at kv_heads: grouped-query kernels do not materialise repeats) and an optional mask; writes O.
    """
    pairs = queries * (queries + 1) // 2 if causal else queries * keys
    flops = batch * heads * pairs * (4 * head_dim + 5)
    elems = batch * (2 * heads * queries * head_dim + 2 * kv_heads * keys * head_dim)
    return Op(name, "attention", flops, elems * dtype_bytes + mask_bytes, launches)


def rmsnorm_op(name: str, rows: int, width: int, dtype_bytes: int = 2) -> Op:
    """The eager fp32 RMSNorm of Qwen and xr0lab.model.dit: [to fp32], pow, mean, +eps, rsqrt, mul,
    [to dtype], weight mul. In bf16: 8 kernels and ~36 bytes/element (2+4 cast, 4+4 pow, 4 mean,
    4+4+4 mul, 4+2 cast back, 2+2+2 weight mul); in fp32 the two casts vanish (6, 28 B)."""
    numel = rows * width
    bf = dtype_bytes == 2
    per_elem = 36 if bf else 28
    return Op(name, "norm", 4 * numel, numel * per_elem + width * dtype_bytes, 8 if bf else 6)


def layernorm_op(name: str, rows: int, width: int, dtype_bytes: int = 2) -> Op:
    """torch's fused native LayerNorm: one kernel, reads x and writes y (+ weight, bias)."""
    numel = rows * width
    return Op(name, "norm", 8 * numel, (2 * numel + 2 * width) * dtype_bytes, 1)


def elementwise_op(name: str, numel: int, *, launches: int = 1, passes: float = 3,
                   dtype_bytes: int = 2) -> Op:
    """`launches` elementwise kernels over `numel` elements touching `passes` element-sized
    reads+writes in total (a binary op is 3: two reads, one write)."""
    return Op(name, "elementwise", numel * launches, numel * passes * dtype_bytes, launches)


def copy_op(name: str, nbytes: float, launches: int = 1) -> Op:
    """A copy/concat: reads and writes `nbytes`."""
    return Op(name, "copy", 0, 2 * nbytes, launches)


def rope_op(name: str, numel: int, dtype_bytes: int = 2, *, upcast: bool = False) -> Op:
    """q*cos + rotate_half(q)*sin: mul, neg (half), cat, mul, add = 5 kernels, ~11 passes;
    the vision variant upcasts to fp32 and back (2 more kernels, in bf16 only)."""
    extra = 2 if upcast and dtype_bytes == 2 else 0
    return elementwise_op(name, numel, launches=5 + extra, passes=11 + 3 * extra,
                          dtype_bytes=dtype_bytes)


def vision_ops(config: XR0Config, s: Shapes) -> list[Op]:
    """Qwen3-VL vision tower (transformers 5.x `Qwen3VLVisionModel`, SDPA path)."""
    v, db = config.vlm, s.dtype_bytes
    P, N, C = s.batch * s.patches, s.batch * s.visual_tokens, v.vision_hidden_size
    I, hd = v.vision_intermediate_size, v.vision_hidden_size // v.vision_num_heads
    patch_in = 3 * v.temporal_patch_size * v.patch_size ** 2
    merged = C * v.spatial_merge_size ** 2
    root = "vlm.model.visual"
    ops = [
        # pixel_values arrive in fp32 from the processor and are cast to the weight dtype
        elementwise_op(f"{root}.patch_embed.cast", P * patch_in, passes=(4 + db) / db,
                       dtype_bytes=db, launches=1 if db == 2 else 0),
        # Conv3d with stride == kernel is a GEMM over flattened patches
        linear_op(f"{root}.patch_embed.proj", P, patch_in, C, bias=True, dtype_bytes=db),
        # bilinear resampling of the learned position grid: 4 gathers, weight, sum, add; plus the
        # index/weight/rotary/cu_seqlens set-up (~20 small kernels, mostly integer)
        elementwise_op(f"{root}.pos_embed", P * C, launches=6, passes=4 * 2 + 4, dtype_bytes=db),
        elementwise_op(f"{root}.setup", P * hd, launches=20, passes=2, dtype_bytes=4),
    ]
    for i in range(v.vision_depth):
        b = f"{root}.blocks.{i}"
        ops += [
            layernorm_op(f"{b}.norm1", P, C, db),
            linear_op(f"{b}.attn.qkv", P, C, 3 * C, bias=True, dtype_bytes=db),
            rope_op(f"{b}.attn.rope", 2 * P * C, db, upcast=True),
            # SDPA runs once per image (block-diagonal attention via cu_seqlens), then one cat
            attention_op(f"{b}.attn.sdpa", batch=s.batch * s.views, heads=v.vision_num_heads,
                         kv_heads=v.vision_num_heads, queries=s.patches_per_view,
                         keys=s.patches_per_view, head_dim=hd, dtype_bytes=db,
                         launches=s.views),
            copy_op(f"{b}.attn.cat", P * C * db),
            linear_op(f"{b}.attn.proj", P, C, C, bias=True, dtype_bytes=db),
            elementwise_op(f"{b}.residual1", P * C, dtype_bytes=db),
            layernorm_op(f"{b}.norm2", P, C, db),
            linear_op(f"{b}.mlp.linear_fc1", P, C, I, bias=True, dtype_bytes=db),
            elementwise_op(f"{b}.mlp.act", P * I, passes=2, dtype_bytes=db),
            linear_op(f"{b}.mlp.linear_fc2", P, I, C, bias=True, dtype_bytes=db),
            elementwise_op(f"{b}.residual2", P * C, dtype_bytes=db),
        ]
        if i in v.deepstack_visual_indexes:
            ops += _merger_ops(f"{root}.deepstack_merger_list."
                               f"{v.deepstack_visual_indexes.index(i)}", N, merged, config, db,
                               norm_width=merged)
    ops += _merger_ops(f"{root}.merger", N, merged, config, db, norm_width=C)
    return ops


def _merger_ops(name: str, tokens: int, merged: int, config: XR0Config, db: int, *,
                norm_width: int) -> list[Op]:
    """LayerNorm (over 1024 before the 2x2 shuffle, or over 4096 after it for deepstack),
    Linear(4096 -> 4096), GELU, Linear(4096 -> LLM width); biases on."""
    return [
        layernorm_op(f"{name}.norm", tokens * merged // norm_width, norm_width, db),
        linear_op(f"{name}.linear_fc1", tokens, merged, merged, bias=True, dtype_bytes=db),
        elementwise_op(f"{name}.act", tokens * merged, passes=2, dtype_bytes=db),
        linear_op(f"{name}.linear_fc2", tokens, merged, config.vlm.hidden_size, bias=True,
                  dtype_bytes=db),
    ]


def prefill_ops(config: XR0Config, s: Shapes) -> list[Op]:
    """Language model over the L prompt tokens (transformers 5.x `Qwen3VLTextModel`), plus the
    multimodal glue around it: embedding, image-token scatter, M-RoPE ids, deepstack adds."""
    v, db = config.vlm, s.dtype_bytes
    B, L, Dm = s.batch, s.prompt_length, v.hidden_size
    M = B * L
    q_dim, kv_dim, hd = v.num_heads * v.head_dim, v.num_kv_heads * v.head_dim, v.head_dim
    root = "vlm.model.language_model"
    ops = [
        elementwise_op(f"{root}.embed_tokens", M * Dm, passes=2, dtype_bytes=db),
        # get_placeholder_mask, masked_scatter of the image features, deepstack masks
        elementwise_op("vlm.model.image_scatter", B * s.visual_tokens * Dm, launches=6, passes=3,
                       dtype_bytes=db),
        # get_rope_index: a Python loop over samples and images of small integer kernels
        elementwise_op("vlm.model.get_rope_index", 3 * M, launches=20 + 8 * s.views, passes=4,
                       dtype_bytes=8),
        # rotary cos/sin shared by all layers, causal-mask set-up
        elementwise_op(f"{root}.rotary_emb", 3 * M * hd // 2, launches=12, passes=4,
                       dtype_bytes=4),
    ]
    for i in range(s.vlm_layers):
        b = f"{root}.layers.{i}"
        ops += [
            rmsnorm_op(f"{b}.input_layernorm", M, Dm, db),
            linear_op(f"{b}.self_attn.q_proj", M, Dm, q_dim, bias=False, dtype_bytes=db),
            linear_op(f"{b}.self_attn.k_proj", M, Dm, kv_dim, bias=False, dtype_bytes=db),
            linear_op(f"{b}.self_attn.v_proj", M, Dm, kv_dim, bias=False, dtype_bytes=db),
            rmsnorm_op(f"{b}.self_attn.q_norm", M * v.num_heads, hd, db),
            rmsnorm_op(f"{b}.self_attn.k_norm", M * v.num_kv_heads, hd, db),
            rope_op(f"{b}.self_attn.rope", M * (q_dim + kv_dim), db),
            # DynamicCache.update: lazy empty init + cat of keys and values
            copy_op(f"{b}.self_attn.cache_update", 2 * M * kv_dim * db, launches=4),
            attention_op(f"{b}.self_attn.sdpa", batch=B, heads=v.num_heads,
                         kv_heads=v.num_kv_heads, queries=L, keys=L, head_dim=hd,
                         dtype_bytes=db, causal=True, launches=1),
            copy_op(f"{b}.self_attn.transpose", M * q_dim * db),
            linear_op(f"{b}.self_attn.o_proj", M, q_dim, Dm, bias=False, dtype_bytes=db),
            elementwise_op(f"{b}.residual1", M * Dm, dtype_bytes=db),
            rmsnorm_op(f"{b}.post_attention_layernorm", M, Dm, db),
            linear_op(f"{b}.mlp.gate_proj", M, Dm, v.intermediate_size, bias=False,
                      dtype_bytes=db),
            linear_op(f"{b}.mlp.up_proj", M, Dm, v.intermediate_size, bias=False,
                      dtype_bytes=db),
            elementwise_op(f"{b}.mlp.act_mul", M * v.intermediate_size, launches=2, passes=2.5,
                           dtype_bytes=db),
            linear_op(f"{b}.mlp.down_proj", M, v.intermediate_size, Dm, bias=False,
                      dtype_bytes=db),
            elementwise_op(f"{b}.residual2", M * Dm, dtype_bytes=db),
        ]
        if i < len(v.deepstack_visual_indexes):
            # _deepstack_process: clone, boolean gather, add, index_put
            ops.append(elementwise_op(f"{root}.deepstack.{i}", M * Dm, launches=7, passes=4,
                                      dtype_bytes=db))
    ops.append(rmsnorm_op(f"{root}.norm", M, Dm, db))
    return ops


def handoff_ops(config: XR0Config, s: Shapes, copy_context: bool) -> list[Op]:
    """What `FlowActionExpert.prepare` does once per chunk: DiT positions, rotary tables, the
    boolean mask, the state token; and, if asked, a contiguous copy of the paired K/V."""
    db, B, S, L = s.dtype_bytes, s.batch, s.dit_tokens, s.prompt_length
    d, D = config.dit, config.dit.hidden_size
    ops = [
        elementwise_op("dit_positions", 3 * B * S, launches=10, passes=3, dtype_bytes=8),
        elementwise_op("rope_cos_sin", B * S * d.head_dim * 3, launches=14, passes=3,
                       dtype_bytes=4),
        elementwise_op("dit_attention_mask", B * S * (L + S), launches=15, passes=2,
                       dtype_bytes=1),
        *_projector_ops("state_projector", B * 1, config.action.state_dim, D, D, db),
    ]
    if copy_context:
        ops.append(copy_op("context_copy", kv_cache_bytes(config, s), launches=2 * s.dit_layers))
    return ops


def kv_cache_bytes(config: XR0Config, s: Shapes) -> int:
    """Bytes of the K and V the DiT reads: dit_layers x 2 x (B, kv_heads, L, head_dim)."""
    v = config.vlm
    return s.dit_layers * 2 * s.batch * v.num_kv_heads * s.prompt_length * v.head_dim \
        * s.dtype_bytes


def _projector_ops(name: str, tokens: int, in_dim: int, mid: int, out: int, db: int) -> list[Op]:
    """MLPProjector: Linear(in -> mid), GELU(tanh), Linear(mid -> out), no biases."""
    return [
        linear_op(f"{name}.layers.0", tokens, in_dim, mid, bias=False, dtype_bytes=db),
        elementwise_op(f"{name}.layers.1", tokens * mid, passes=2, dtype_bytes=db),
        linear_op(f"{name}.layers.2", tokens, mid, out, bias=False, dtype_bytes=db),
    ]


def dit_step_ops(config: XR0Config, s: Shapes) -> list[Op]:
    """One `FlowActionExpert.denoise_step` plus the Euler update (xr0lab.model.dit, spec section 3)."""
    d, db = config.dit, s.dtype_bytes
    B, S, T, L, D = s.batch, s.dit_tokens, s.chunk_length, s.prompt_length, d.hidden_size
    A, M, hd = config.action.action_dim, s.batch * s.dit_tokens, d.head_dim
    n_rep = d.num_heads // d.num_kv_heads
    ops = [
        elementwise_op("action_mask", B * T * A, launches=1 + (db == 2), dtype_bytes=db),
        *_projector_ops("action_projector", B * T, A, D, D, db),
        copy_op("sink_state_actions_cat", M * D * db),
        # sinusoid of 1000 t: arange, scale, exp, mul, cos, sin, cat (fp32), cast
        elementwise_op("t_embedder.sinusoid", B * d.timestep_dim, launches=9, passes=2,
                       dtype_bytes=4),
        linear_op("t_embedder.mlp.0", B, d.timestep_dim, D, bias=False, dtype_bytes=db),
        elementwise_op("t_embedder.mlp.1", B * D, passes=2, dtype_bytes=db),
        linear_op("t_embedder.mlp.2", B, D, D, bias=False, dtype_bytes=db),
        linear_op("t_projector.layers.0", B, D, 6 * D, bias=True, dtype_bytes=db),
    ]
    # SDPA with a boolean mask: the memory-efficient kernel takes an additive float mask, so the
    # bool mask is converted (zeros + masked_fill) every call
    mask_bytes = B * S * (L + S) * (1 + 2 * db)
    for i in range(s.dit_layers):
        b = f"dit.layers.{i}"
        ops += [
            elementwise_op(f"{b}.adaln", B * 6 * D, dtype_bytes=db),
            rmsnorm_op(f"{b}.input_layernorm", M, D, db),
            elementwise_op(f"{b}.modulate1", M * D, launches=3, passes=3, dtype_bytes=db),
            linear_op(f"{b}.attn.qkv_proj", M, D, 3 * D, bias=True, dtype_bytes=db),
            rmsnorm_op(f"{b}.attn.q_norm", M * d.num_heads, hd, db),
            rmsnorm_op(f"{b}.attn.k_norm", M * d.num_heads, hd, db),
            rope_op(f"{b}.attn.rope", 2 * M * D, db),
            # keys/values = cat([VLM K/V of the paired layer (repeated for GQA), DiT K/V])
            copy_op(f"{b}.attn.kv_cat", 2 * B * d.num_heads * (L + S) * hd * db,
                    launches=2 + (2 if n_rep > 1 else 0)),
            attention_op(f"{b}.attn.sdpa", batch=B, heads=d.num_heads, kv_heads=d.num_heads,
                         queries=S, keys=L + S, head_dim=hd, dtype_bytes=db,
                         mask_bytes=mask_bytes, launches=3),
            copy_op(f"{b}.attn.transpose", M * D * db),
            linear_op(f"{b}.attn.o_proj", M, D, D, bias=False, dtype_bytes=db),
            elementwise_op(f"{b}.gate_residual1", M * D, launches=2, passes=3, dtype_bytes=db),
            rmsnorm_op(f"{b}.middle_layernorm", M, D, db),
            rmsnorm_op(f"{b}.post_layernorm", M, D, db),
            elementwise_op(f"{b}.modulate2", M * D, launches=3, passes=3, dtype_bytes=db),
            linear_op(f"{b}.mlp.gate_proj", M, D, d.intermediate_size, bias=False,
                      dtype_bytes=db),
            linear_op(f"{b}.mlp.up_proj", M, D, d.intermediate_size, bias=False, dtype_bytes=db),
            elementwise_op(f"{b}.mlp.act_mul", M * d.intermediate_size, launches=2, passes=2.5,
                           dtype_bytes=db),
            linear_op(f"{b}.mlp.down_proj", M, d.intermediate_size, D, bias=False,
                      dtype_bytes=db),
            elementwise_op(f"{b}.gate_residual2", M * D, launches=2, passes=3, dtype_bytes=db),
            rmsnorm_op(f"{b}.final_layernorm", M, D, db),
        ]
    ops += [
        *_projector_ops("action_output_layer", B * T, D, A, A, db),
        # output cast, Euler x + v / N, prefix bookkeeping, flow-time tensor
        elementwise_op("euler_update", B * T * A, launches=5, passes=3, dtype_bytes=4),
    ]
    return ops


def preprocess_ops(config: XR0Config, s: Shapes) -> list[Op]:
    """Host work modelled as bytes: uint8 frames -> normalised fp32 patches (each frame repeated
    for the temporal patch), tokenised prompt, and the host-to-device copy of both."""
    v = config.vlm
    pixels = s.batch * s.patches * v.patch_size ** 2
    patch_floats = pixels * 3 * v.temporal_patch_size
    return [
        Op("image_normalise", "host", 3 * pixels * 4, 3 * pixels + 4 * patch_floats,
           launches=4 * s.views),
        Op("to_device", "host", 0, 4 * patch_floats + 3 * 8 * s.batch * s.prompt_length,
           launches=4),
    ]


def postprocess_ops(config: XR0Config, s: Shapes) -> list[Op]:
    """Actions to the host and de-normalised (x * std + mean): tiny."""
    n = s.batch * s.chunk_length * config.action.action_dim
    return [Op("decode_actions", "host", 2 * n, 4 * 4 * n, launches=3)]


def stage_costs(config: XR0Config, workload: Workload = RELEASED) -> list[StageCost]:
    """Per-stage costs of one inference, in execution order (DiT steps one stage each)."""
    s = workload.resolve(config)
    prefill = prefill_ops(config, s)
    if workload.lm_head_tokens:
        prefill.append(linear_op("vlm.lm_head", s.batch * workload.lm_head_tokens,
                                 config.vlm.hidden_size, config.vlm.vocab_size, bias=False,
                                 dtype_bytes=s.dtype_bytes))
    step = StageCost.from_ops("dit_step_0", dit_step_ops(config, s))
    return [
        StageCost.from_ops("preprocess", preprocess_ops(config, s)),
        StageCost.from_ops("vision", vision_ops(config, s)),
        StageCost.from_ops("prefill", prefill),
        StageCost.from_ops("handoff", handoff_ops(config, s, workload.copy_context)),
        *(step.renamed(f"dit_step_{k}") for k in range(s.num_steps)),
        StageCost.from_ops("postprocess", postprocess_ops(config, s)),
    ]


# ---------------------------------------------------------------------------------------------
# Roofline prediction
# ---------------------------------------------------------------------------------------------
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


def speed_options(workload: Workload, config: XR0Config) -> dict[str, Workload]:
    """The what-if variants of a workload that need no new kernels: fewer flow steps, a VLM
    truncated to fewer layers (the DiT keeps pairing the last ones), fewer views, lower
    resolution. Keys are labels for tables and plots."""
    s = workload.resolve(config)
    h, w = workload.image_hw
    half = whole_tokens(config, h // 2, w // 2)
    out = {"baseline": workload}
    if s.num_steps > 1:
        out[f"steps {s.num_steps}->{max(1, s.num_steps // 2)}"] = replace(
            workload, num_steps=max(1, s.num_steps // 2))
        out[f"steps {s.num_steps}->1"] = replace(workload, num_steps=1)
    fewer = max(s.dit_layers, s.vlm_layers * 3 // 4)
    if fewer < s.vlm_layers:
        out[f"VLM layers {s.vlm_layers}->{fewer}"] = replace(workload, vlm_layers=fewer)
    if s.views > 1:
        out[f"views {s.views}->{s.views - 1}"] = replace(workload, views=s.views - 1)
    if half != (h, w):
        out[f"resolution {h}x{w}->{half[0]}x{half[1]}"] = replace(workload, image_hw=half)
    return out


def speed_option_table(config: XR0Config, workload: Workload, device: Device
                       ) -> list[tuple[str, float, float]]:
    """(label, predicted seconds, ratio to baseline) for each `speed_options` variant, plus the
    fused (compiled) variant of the baseline."""
    base = total_seconds(predict(config, workload, device))
    rows = [(label, t, t / base) for label, t in (
        (label, total_seconds(predict(config, w, device)))
        for label, w in speed_options(workload, config).items())]
    fused = total_seconds(predict(config, workload, device, fusion="elementwise"))
    rows.append(("elementwise ops fused (compile)", fused, fused / base))
    return rows


def released_breakdown(device: str | Device = "rtx4090",
                       config: XR0Config | None = None) -> list[StagePrediction]:
    """The released configuration (xr0 preset, RELEASED workload) on a device."""
    dev = get_device(device) if isinstance(device, str) else device
    return predict(config or preset("xr0"), RELEASED, dev)


def main(argv: Sequence[str] | None = None) -> None:
    """Print the predicted RTX 4090 breakdown of the released configuration vs the reported 80 ms,
    and the same prediction on every tabulated device."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m xr0lab.latency.costmodel", description=main.__doc__)
    parser.add_argument("--device", default="rtx4090", choices=sorted(DEVICES))
    parser.add_argument("--launch-overhead-us", type=float, default=None,
                        help="override the per-op launch overhead (microseconds)")
    args = parser.parse_args(argv)
    dev = get_device(args.device)
    if args.launch_overhead_us is not None:
        dev = replace(dev, launch_overhead_s=args.launch_overhead_us * 1e-6)
    cfg = preset("xr0")
    s = RELEASED.resolve(cfg)
    print(f"released workload: {s.views} views x {s.tokens_per_view} tokens + {s.text_tokens} "
          f"text = L {s.prompt_length}; chunk {s.chunk_length}; {s.num_steps} steps; bf16")
    print(f"device {dev.name}: {dev.source}\n")
    preds = predict(cfg, RELEASED, dev)
    print(format_breakdown(preds, reported_s=REPORTED_RTX4090_S if dev.name == "rtx4090"
                           else None))
    overhead_ms = {us: total_seconds(predict(cfg, RELEASED, replace(
        dev, launch_overhead_s=us * 1e-6))) * 1e3 for us in (0, 2, 5, 10)}
    print("\nsensitivity (total ms): launch overhead "
          + ", ".join(f"{us:g} us {ms:.1f}" for us, ms in overhead_ms.items()))
    rows = speed_option_table(cfg, RELEASED, dev)
    print("speed options (predicted ms, ratio): "
          + "; ".join(f"{label} {t * 1e3:.1f} ({r:.2f})" for label, t, r in rows))
    print("\nall devices (ms):", ", ".join(
        f"{name} {total_seconds(predict(cfg, RELEASED, d)) * 1e3:.1f}"
        for name, d in DEVICES.items()))


if __name__ == "__main__":
    main()
