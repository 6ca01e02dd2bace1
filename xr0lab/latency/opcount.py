"""Op counts of one XR-0 inference: FLOPs, bytes moved and kernel launches, op by op and stage by
stage (`stage_costs`), for a `Workload` on a config.

Stages (the same names `xr0lab.latency.timers` measures):
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
How these counts become seconds is `xr0lab.latency.roofline`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal, Sequence

from xr0lab.config import XR0Config
from xr0lab.latency.workload import RELEASED, Shapes, Workload

OpKind = Literal["linear", "attention", "norm", "elementwise", "copy", "host"]


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
    """One `FlowActionExpert.denoise_step` plus the Euler update (xr0lab.model.dit, docs/architecture.md §3)."""
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
