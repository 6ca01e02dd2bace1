"""Cost model (op counts, workloads, roofline): hand-checkable op counts, shapes against the
spec's parameter table and the real modules (meta device), token counting, roofline arithmetic."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from xr0lab.latency import devices, opcount, probe, roofline, workload
from xr0lab.config import preset

XR0 = preset("xr0")


# -- primitives --------------------------------------------------------------------------------
def test_linear_op_by_hand():
    op = opcount.linear_op("x", 4, 8, 16, bias=False)
    assert op.flops == 2 * 4 * 8 * 16
    assert op.bytes == (4 * 8 + 8 * 16 + 4 * 16) * 2  # X, W, Y once each in bf16
    assert op.params == 8 * 16 and op.launches == 1
    biased = opcount.linear_op("x", 4, 8, 16, bias=True, dtype_bytes=4)
    assert biased.flops == op.flops  # bias add is fused in the GEMM epilogue, not counted
    assert biased.bytes == (4 * 8 + 8 * 16 + 4 * 16 + 16) * 4


def test_attention_op_by_hand():
    # 2 query heads sharing 1 kv head, 3 queries over 5 keys, head dim 4
    op = opcount.attention_op("a", batch=1, heads=2, kv_heads=1, queries=3, keys=5, head_dim=4)
    assert op.flops == 2 * 3 * 5 * (4 * 4 + 5)  # QK^T + PV (2 x 2*h) + ~5 softmax flops / score
    assert op.bytes == (2 * 2 * 3 * 4 + 2 * 1 * 5 * 4) * 2  # Q and O; K and V at kv heads
    causal = opcount.attention_op("a", batch=1, heads=1, kv_heads=1, queries=4, keys=4,
                                  head_dim=4, causal=True)
    assert causal.flops == 10 * (4 * 4 + 5)  # lower triangle: 4 * 5 / 2 pairs


def test_one_vlm_layer_flops_by_hand():
    """One Qwen3 text layer at L tokens: linear FLOPs = 2 L (weight params); attention causal."""
    cfg = preset("tiny")
    s = workload.Workload(views=1, image_hw=(64, 64), text_tokens=6, dtype_bytes=4).resolve(cfg)
    L, v = s.prompt_length, cfg.vlm
    assert L == 4 + 6  # 64x64 px = 2x2 tokens of 32x32 px
    layer0 = [o for o in opcount.prefill_ops(cfg, s) if ".layers.0." in o.name]
    D, q, kv, I = v.hidden_size, v.num_heads * v.head_dim, v.num_kv_heads * v.head_dim, \
        v.intermediate_size
    weights = D * q + 2 * D * kv + q * D + 3 * D * I
    assert sum(o.flops for o in layer0 if o.kind == "linear") == 2 * L * weights
    attn = [o for o in layer0 if o.kind == "attention"]
    assert [o.flops for o in attn] == [v.num_heads * L * (L + 1) // 2 * (4 * v.head_dim + 5)]


# -- the DiT against the spec's parameter table ------------------------------------------------
def _dit_linear_weight_params_from_spec_shapes(D: int = 1024) -> int:
    """Weights of the linear layers of one DiT layer, from the shapes in docs/architecture.md §3.3."""
    shapes = [(3 * D, D), (D, D), (4 * D, D), (4 * D, D), (D, 4 * D)]  # qkv, o, gate, up, down
    return sum(a * b for a, b in shapes)


def test_spec_parameter_table_splits_into_linear_and_other():
    linear = _dit_linear_weight_params_from_spec_shapes()
    qkv_bias, qk_norms, norms, adaln = 3072, 2 * 128, 4 * 1024, 6 * 1024
    assert linear + qkv_bias + qk_norms + norms + adaln == 16_790_784  # spec: one DiT layer


@pytest.mark.parametrize("T", [30, 10])
def test_xr0_dit_step_linear_flops_match_independent_count(T):
    w = dataclasses.replace(workload.RELEASED, chunk_length=T)
    step = next(st for st in opcount.stage_costs(XR0, w) if st.name == "dit_step_0")
    in_layers = sum(o.flops for o in step.ops if o.kind == "linear" and o.name.startswith("dit."))
    n_layers = XR0.dit.num_layers
    assert in_layers == 2 * (2 + T) * _dit_linear_weight_params_from_spec_shapes() * n_layers
    # outside the layers, per step: action projector and output layer on T tokens, timestep path
    # on one token (the state projector runs once per chunk, at hand-off)
    D, A, F = 1024, 32, 256
    outside = 2 * T * (A * D + D * D) + 2 * T * (D * A + A * A) + 2 * (F * D + D * D + D * 6 * D)
    assert step.flops_of("linear") - in_layers == outside


def test_dit_ops_match_the_modules_on_meta_device():
    """Every Linear of the real action expert appears once, with its weight size (no allocation)."""
    from xr0lab.model.expert import FlowActionExpert

    with torch.device("meta"):
        expert = FlowActionExpert(XR0)
    stages = opcount.stage_costs(XR0, workload.RELEASED)
    ops = {o.name: o for st in stages if st.name in ("handoff", "dit_step_0") for o in st.ops
           if o.kind == "linear"}
    linears = {n: m for n, m in expert.named_modules() if isinstance(m, torch.nn.Linear)}
    assert set(ops) == set(linears)
    for name, module in linears.items():
        assert ops[name].params == module.weight.numel(), name


def test_vlm_ops_match_the_library_model_on_meta_device():
    """Every Linear/Conv3d of transformers' Qwen3-VL (bar the unused LM head) is modelled once."""
    from xr0lab.model.vlm import build_vlm

    with torch.device("meta"):
        vlm = build_vlm(XR0.vlm)
    stages = {st.name: st for st in opcount.stage_costs(XR0, workload.RELEASED)}
    ops = {o.name: o for name in ("vision", "prefill") for o in stages[name].ops
           if o.kind == "linear"}
    modules = {f"vlm.{n}": m for n, m in vlm.named_modules()
               if isinstance(m, (torch.nn.Linear, torch.nn.Conv3d)) and n != "lm_head"}
    assert set(ops) == set(modules)
    for name, module in modules.items():
        assert ops[name].params == module.weight.numel(), name


# -- tokens and workloads ----------------------------------------------------------------------
def test_visual_tokens_one_per_32x32_pixels():
    from xr0lab.io.images import smart_resize

    assert workload.RELEASED.image_hw == smart_resize(480, 640)  # a 640x480 camera, 90,000 px cap
    s = workload.RELEASED.resolve(XR0)
    assert (s.tokens_per_view, s.patches_per_view) == (80, 320)  # 8 x 10 tokens, 16 x 20 patches
    assert s.prompt_length == 3 * 80 + 64 and s.dit_tokens == 32 and s.num_steps == 5


def test_workload_errors_name_the_field():
    with pytest.raises(ValueError, match="image_hw"):
        workload.Workload(image_hw=(250, 320)).resolve(XR0)
    with pytest.raises(ValueError, match="dit_layers"):
        workload.Workload(vlm_layers=8).resolve(XR0)  # DiT has 16 layers
    with pytest.raises(ValueError, match="dtype_bytes"):
        workload.Workload(dtype_bytes=3)
    with pytest.raises(KeyError, match="probe_cpu"):
        devices.get_device("cpu")


def test_prefill_runs_every_vlm_layer_whatever_the_dit_depth():
    def prefill(w):
        return next(st for st in opcount.stage_costs(XR0, w) if st.name == "prefill")

    base = prefill(workload.RELEASED)
    assert prefill(dataclasses.replace(workload.RELEASED, dit_layers=4)).flops == base.flops
    truncated = prefill(dataclasses.replace(workload.RELEASED, vlm_layers=18))
    assert truncated.flops_of("linear") == pytest.approx(base.flops_of("linear") / 2)


def test_steps_scale_the_dit_only():
    one = opcount.stage_costs(XR0, dataclasses.replace(workload.RELEASED, num_steps=1))
    five = opcount.stage_costs(XR0, workload.RELEASED)
    assert len(five) - len(one) == 4
    assert sum(st.flops for st in five) - sum(st.flops for st in one) == \
        pytest.approx(4 * five[4].flops)


# -- roofline ----------------------------------------------------------------------------------
def test_roofline_of_a_single_op_stage():
    dev = devices.Device("toy", peak_flops_bf16=1e12, mem_bandwidth=1e11,
                         launch_overhead_s=1e-5, source="test")
    stage = opcount.StageCost.from_ops("gemm",
                                       [opcount.linear_op("w", 1000, 1000, 1000, bias=False)])
    p = roofline.predict_stage(stage, dev)
    assert p.seconds == pytest.approx(max(2e9 / 1e12, 6e6 / 1e11) + 1e-5)
    assert p.bound == "compute"
    assert roofline.predict_stage(stage, dataclasses.replace(dev, peak_flops_bf16=1e15)).bound == \
        "memory"
    assert roofline.predict_stage(stage, dataclasses.replace(dev, launch_overhead_s=1.0)).bound == \
        "launch"


def test_fusion_drops_elementwise_ops_only():
    step = next(st for st in opcount.stage_costs(XR0, workload.RELEASED) if st.name == "dit_step_0")
    fused = roofline.fuse(step, "elementwise")
    assert fused.flops_of("linear") == step.flops_of("linear")
    assert fused.launches < step.launches / 3


def test_released_rtx4090_prediction_is_in_a_sane_range():
    """Guards units, not accuracy: the roofline should land within 4x of the reported 80 ms."""
    preds = roofline.released_breakdown("rtx4090")
    total = roofline.total_seconds(preds)
    assert 0.02 < total < 0.32
    bounds = {p.name: p.bound for p in preds}
    assert bounds["prefill"] == "compute" and bounds["dit_step_0"] == "launch"
    assert "prefill" in roofline.format_breakdown(preds, reported_s=roofline.REPORTED_RTX4090_S)


def test_probe_cpu_returns_a_device():
    dev = probe.probe_cpu(threads=1, matmul_size=64, copy_mb=4, min_time_s=0.01)
    assert dev.name == "cpu" and dev.peak_flops_bf16 > 0 and dev.mem_bandwidth > 0
    assert 0 < dev.launch_overhead_s < 1e-3 and "probe_cpu" in dev.source


def test_predict_command_prints_the_released_report(capsys):
    from xr0lab.cli import main

    assert main(["predict"]) == 0
    out = capsys.readouterr().out
    assert out == roofline.released_report("rtx4090") + "\n"
    assert "reported 80.0 ms" in out and "\nall devices (ms): rtx4090 " in out
    assert main(["predict", "--device", "h100-sxm", "--launch-overhead-us", "0"]) == 0
    assert capsys.readouterr().out == roofline.released_report(
        "h100-sxm", launch_overhead_s=0.0) + "\n"
