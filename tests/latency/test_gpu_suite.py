"""The GPU suite (`xr0lab profile --suite gpu`) checked on CPU, so a typo cannot waste device
time: the dry run of the whole code path on the mid preset, the refusal to overwrite recorded
measurements, construction that allocates nothing on the host, a full-size DiT loop that touches
no host tensor (what CUDA-graph capture needs), the launch-overhead refit on planted numbers,
the time budget, and the shell script handed to the GPU machine. No timing claims."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from xr0lab.config import preset
from xr0lab.latency.devices import get_device
from xr0lab.latency.roofline import (fit_launch_overhead, launch_overhead_sweep, predict,
                                     released_breakdown, roofline_seconds, total_seconds)
from xr0lab.latency.suite import SuiteSettings, _Suite, derive
from xr0lab.latency.timers import time_interleaved
from xr0lab.latency.workload import RELEASED

REPO = Path(__file__).resolve().parents[2]
STAGES_2_STEPS = ["preprocess", "vision", "prefill", "handoff", "dit_step_0", "dit_step_1",
                  "postprocess"]


class _HostBytes(TorchDispatchMode):
    """Counts bytes of every tensor an op leaves on the CPU, and ops that read a CPU tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.cpu_bytes, self.cpu_inputs, self.ops = 0, [], 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops += 1
        leaves = torch.utils._pytree.tree_leaves((args, kwargs or {}))
        if any(isinstance(a, torch.Tensor) and a.device.type == "cpu" for a in leaves):
            self.cpu_inputs.append(str(func))
        out = func(*args, **(kwargs or {}))
        for o in torch.utils._pytree.tree_leaves(out):
            if isinstance(o, torch.Tensor) and o.device.type == "cpu":
                self.cpu_bytes += o.numel() * o.element_size()
        return out


# -- the dry run ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    """`xr0lab profile --suite gpu` on the mid preset, CPU, tiny counts; torch.compile stood in
    by a recorder (the test suite compiles nothing), so the compile part's code still runs."""
    import io
    from contextlib import redirect_stdout

    from xr0lab.cli import main

    out = tmp_path_factory.mktemp("suite")
    calls = []
    real_compile = torch.compile

    def fake_compile(fn, **kwargs):
        calls.append(kwargs)
        return fn

    torch.compile = fake_compile
    argv = ["profile", "--suite", "gpu", "--preset", "mid", "--device", "cpu", "--dry-run",
            "--image-size", "64", "64", "--steps", "2", "--out", str(out)]
    printed = io.StringIO()
    try:
        with redirect_stdout(printed):
            rc = main(argv)
    finally:
        torch.compile = real_compile
    return {"rc": rc, "out": out, "printed": printed.getvalue(), "compile_calls": calls,
            "record": json.loads((out / "profile_mid_cpu.json").read_text())}


def test_dry_run_records_every_part(dry_run):
    rec = dry_run["record"]
    assert dry_run["rc"] == 0
    assert (rec["schema"], rec["suite"], rec["preset"], rec["complete"]) == (
        "xr0lab.profile/1", "gpu", "mid", True)
    assert rec["device"]["type"] == "cpu" and rec["dtype"] == "float32"
    assert {"torch", "transformers"} <= set(rec["versions"])
    expected = list(SuiteSettings(views=(3, 2)).part_names()) + ["plot"]
    assert list(rec["parts"]) == expected
    assert all(p["status"] == "ok" for p in rec["parts"].values()), rec["parts"]
    assert rec["settings"]["argv"][-1] == str(dry_run["out"])
    # the CUDA-only pieces say why they did not run, instead of crashing
    assert rec["dit_loop"]["cuda_graph"] is False
    assert rec["dit_loop"]["cuda_graph_skipped"] == "CUDA graphs need a CUDA device"
    assert rec["dit_loop_compiled"]["notes"]["compiled_graph"] == "CUDA graphs need a CUDA device"
    assert rec["peak_memory"] == {"status": "skipped",
                                  "reason": "torch.cuda.max_memory_allocated needs CUDA"}
    assert (dry_run["out"] / "profile_mid_cpu.png").read_bytes()[:4] == b"\x89PNG"
    assert not list(dry_run["out"].glob("*.tmp"))


def test_dry_run_inference_matches_its_workload(dry_run):
    rec = dry_run["record"]
    for views in (3, 2):
        entry = rec["inference"][f"{views} views"]
        w = entry["workload"]
        # 64x64 px = 4 x 4 patches of 16 = 4 merged tokens a view; the synthetic prompt holds
        # 64 text tokens, like the cost model's released workload
        assert (w["views"], w["image_hw"], w["text_tokens"], w["num_steps"]) == (
            views, [64, 64], 64, 2)
        assert list(entry["stages"]) == STAGES_2_STEPS
        assert all({"p50", "p95", "p99"} <= set(st) and st["n"] == 1
                   for st in entry["stages"].values())
        assert len(entry["warmup"]) == 1 and entry["total"]["n"] == 1
        assert set(entry["predictions"]["probe"]) == set(STAGES_2_STEPS)
        assert [r["stage"] for r in entry["comparison"]["probe"]] == STAGES_2_STEPS
        assert entry["total_over_roofline"]["probe"] > 0
    assert rec["stages"] == rec["inference"]["3 views"]["stages"]  # the main profile
    assert rec["table_device"] is None  # no datasheet entry for a CPU


def test_dry_run_dit_loop_compile_hooks_and_realtime(dry_run):
    rec = dry_run["record"]
    assert set(rec["dit_loop"]["arms"]) == {"eager_sample", "eager_static"}
    assert rec["dit_loop"]["prompt_length"] == 3 * 4 + 64
    assert set(rec["dit_loop_compiled"]["arms"]) == {"eager_static", "compiled"}
    assert dry_run["compile_calls"] == [{"dynamic": False}]
    # the stand-in compiles nothing, so the "compiled" loop is the eager one, bit for bit
    assert rec["dit_loop_compiled"]["compiled_vs_eager_max_abs_diff"] == 0.0
    bounds = rec["dit_loop"]["bounds"]["probe"]
    assert 0 < bounds["fused_roofline_s"] < bounds["roofline_s"] < bounds["eager_prediction_s"]
    assert rec["dit_loop_compiled"]["arms"]["compiled"]["bound_used"] == "fused_roofline_s"
    hooks = rec["hook_overhead"]
    assert set(hooks["times_s"]) == {"bare", "plain", "noop", "cache-none", "cache-1-pattern"}
    assert set(hooks["ratios"]) == {"noop_over_plain", "plain_over_bare",
                                    "cache_none_over_plain", "cache_1_pattern_over_plain"}
    rt = rec["realtime"]
    assert (rt["rate_hz"], rt["ticks"]) == (30.0, 15)  # 0.5 s at 30 Hz
    assert rt["executor"]["strategy"] == "naive" and rt["executor"]["execution_horizon"] == 20
    assert rec["timer_overhead"]["repeats"] == 1


def test_dry_run_targets_fit_and_rtx4090_range(dry_run):
    rec = dry_run["record"]
    targets = rec["targets"]
    assert [t["target"].split(" ")[0] for t in targets] == ["DiT", "whole", "whole", "hooks",
                                                            "hooks"]
    assert [t["limit"] for t in targets] == [2.0, 1.5, 1.5, 0.01, 0.01]
    assert all(t["note"] == "not a GPU run: no claim" for t in targets)
    assert set(rec["launch_fit"]["probe"]) == {"dit_steps", "all_stages", "dit_loop_eager_static"}
    # the RTX 4090 range is the cost model's, on the full-size released workload
    assumed = rec["rtx4090"]["assumed"]
    assert [r["us"] for r in assumed] == [0.0, 2.0, 5.0, 10.0]
    assert assumed[2]["total_ms"] == pytest.approx(
        total_seconds(released_breakdown("rtx4090")) * 1e3, rel=1e-12)
    assert [r["fit"] for r in rec["rtx4090"]["refit"]] == [
        "probe/dit_steps", "probe/all_stages", "probe/dit_loop_eager_static"]
    printed = dry_run["printed"]
    assert "targets (ratio vs limit, side by side in this run):" in printed
    assert f"wrote {dry_run['out'] / 'profile_mid_cpu.json'}" in printed


def test_dry_run_record_reads_like_any_profile(dry_run):
    from xr0lab.latency.hook_overhead import format_hook_overhead
    from xr0lab.latency.records import load_profiles, summarize_record

    (rec,) = load_profiles(dry_run["out"], device_type="cpu")
    assert summarize_record(rec).startswith("mid on ")
    assert "ratios side by side" in format_hook_overhead(rec["hook_overhead"])


# -- never overwrite recorded measurements -------------------------------------------------------

@pytest.mark.parametrize("suite", ["stages", "gpu"])
def test_profile_refuses_to_overwrite_a_record(tmp_path, capsys, suite):
    from xr0lab.cli import main

    name = "profile_tiny_cpu.json"
    (tmp_path / name).write_text("recorded")
    with pytest.raises(SystemExit) as stop:
        main(["profile", "--preset", "tiny", "--suite", suite, "--out", str(tmp_path)])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert str(tmp_path / name) in err and "--overwrite" in err
    assert (tmp_path / name).read_text() == "recorded"
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # refused before any work


def test_profile_overwrite_replaces_the_record(tmp_path):
    from xr0lab.cli import main

    (tmp_path / "profile_tiny_cpu.json").write_text("recorded")
    argv = ["profile", "--preset", "tiny", "--views", "1", "--image-size", "32", "32",
            "--steps", "1", "--repeats", "1", "--warmup", "0", "--out", str(tmp_path),
            "--overwrite"]
    assert main(argv) == 0
    assert json.loads((tmp_path / "profile_tiny_cpu.json").read_text())["total"]["n"] == 1


def test_suite_only_flags_are_refused_by_the_stage_profile(capsys):
    from xr0lab.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["profile", "--budget-s", "10"])
    assert stop.value.code == 2
    assert "--budget-s belongs to --suite gpu" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["profile", "--suite", "gpu", "--speed-options"])
    assert "--speed-options does not apply to --suite gpu" in capsys.readouterr().err


# -- what must hold on the GPU, checked on meta --------------------------------------------------

@pytest.fixture(scope="module")
def meta_xr0():
    """The full-size model built by the suite's `build_model` on `meta`, and what the
    construction left on the host."""
    from xr0lab.latency.pipeline import build_model

    counter = _HostBytes()
    with counter:
        model = build_model(preset("xr0"), device="meta", dtype="bfloat16")
    return model, counter


def test_full_size_construction_allocates_nothing_on_the_host(meta_xr0):
    """build_model creates every tensor on the target device: under `meta` (standing in for
    cuda), construction of the 4.7B model leaves no byte on the CPU."""
    model, counter = meta_xr0
    assert counter.cpu_bytes == 0 and counter.cpu_inputs == []
    params = list(model.parameters())
    assert {p.device.type for p in params} == {"meta"}
    assert {p.dtype for p in params} == {torch.bfloat16}
    assert sum(p.numel() for p in params) == 4_716_274_176
    assert not model.training


def test_full_size_dit_loop_touches_no_host_tensor(meta_xr0):
    """CUDA-graph capture fails on any host tensor or host sync inside the loop. On meta every op
    of the full-size loop must read only device (meta) tensors; `.item()` would raise. Two steps
    (every step runs the same code; the second shows the loop carries its state on the device)."""
    from xr0lab.latency.cuda_graph import StaticDiTLoop
    from xr0lab.model.vlm import VLMContext

    model = meta_xr0[0]
    cfg = model.config
    v, L = cfg.vlm, 304

    def kv():
        return torch.empty(1, v.num_kv_heads, L, v.head_dim, device="meta", dtype=torch.bfloat16)

    context = VLMContext(keys=tuple(kv() for _ in range(cfg.dit.num_layers)),
                         values=tuple(kv() for _ in range(cfg.dit.num_layers)),
                         prompt_mask=torch.ones(1, L, dtype=torch.bool, device="meta"),
                         positions=torch.zeros(3, 1, L, dtype=torch.long, device="meta"),
                         vlm_layers=tuple(range(20, 36)))
    loop = StaticDiTLoop(model, context, torch.zeros(1, 1, cfg.action.state_dim, device="meta"),
                         torch.ones(1, 30, cfg.action.action_dim, device="meta"),
                         num_steps=2, cuda_graph=False)
    counter = _HostBytes()
    with counter:
        out = loop._loop()
    assert counter.cpu_inputs == [] and counter.cpu_bytes == 0
    assert (tuple(out.shape), out.device.type) == ((1, 30, 32), "meta")
    assert counter.ops > 2 * 1000  # the loop really ran: thousands of ops a step


# -- the pieces ----------------------------------------------------------------------------------

def test_fit_launch_overhead_recovers_a_planted_overhead():
    preds = predict(preset("xr0"), RELEASED, get_device("h200"))
    planted = {p.name: roofline_seconds(p) + p.launches * 3e-6 for p in preds}
    fit = fit_launch_overhead(planted, preds)
    assert fit["launch_overhead_s"] == pytest.approx(3e-6, rel=1e-9)
    assert max(abs(r) for r in fit["relative_residual"].values()) < 1e-9
    dit = [p for p in preds if p.name.startswith("dit_step_")]
    assert fit_launch_overhead(planted, dit)["stages"] == [p.name for p in dit]
    # measured faster than the roofline: the fit says 0, not a negative overhead
    fast = {p.name: 0.5 * roofline_seconds(p) for p in preds}
    assert fit_launch_overhead(fast, preds)["launch_overhead_s"] == 0.0
    with pytest.raises(ValueError, match="no stage is both measured and predicted"):
        fit_launch_overhead({"nothing": 1.0}, preds)


def test_launch_overhead_sweep_is_the_cost_model_at_each_overhead():
    rows = launch_overhead_sweep("rtx4090", (0.0, 5.0, 10.0))
    launches = sum(p.launches for p in released_breakdown("rtx4090"))
    assert rows[1]["total_ms"] == pytest.approx(
        total_seconds(released_breakdown("rtx4090")) * 1e3, rel=1e-12)
    # linear in the overhead: every launch costs the overhead once
    assert rows[2]["total_ms"] - rows[0]["total_ms"] == pytest.approx(launches * 10e-3, rel=1e-9)
    assert rows[0]["launch_ms"] == 0.0 and rows[0]["bound"] == "roofline"
    with pytest.raises(ValueError, match=">= 0 us"):
        launch_overhead_sweep("rtx4090", (-1.0,))


def test_time_interleaved_alternates_arms_and_keeps_the_first_call():
    order = []
    arms = {"a": lambda: order.append("a"), "b": lambda: order.append("b")}
    out = time_interleaved(arms, repeats=3, warmup=2, sync=lambda: order.append("sync"))
    calls = [c for c in order if c != "sync"]
    assert calls == ["a", "b"] * 5
    assert order[:4] == ["sync", "a", "sync", "sync"]  # each call bracketed by a synchronise
    assert [out[k]["n"] for k in "ab"] == [3, 3] and len(out["a"]["samples_s"]) == 3
    assert out["a"]["first_call_s"] is not None
    assert time_interleaved(arms, repeats=1, warmup=0)["a"]["first_call_s"] is None
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        time_interleaved(arms, repeats=0)


def test_suite_settings_reject_bad_values():
    with pytest.raises(ValueError, match="SuiteSettings.repeats must be >= 1"):
        SuiteSettings(repeats=0)
    with pytest.raises(ValueError, match="SuiteSettings.views"):
        SuiteSettings(views=(4,))
    with pytest.raises(ValueError, match="SuiteSettings.budget_s must be > 0"):
        SuiteSettings(budget_s=0)
    assert SuiteSettings().repeats >= 50 and SuiteSettings().loop_repeats >= 50


def test_budget_skips_what_does_not_fit_and_interrupts_an_overrun(tmp_path):
    logged = []
    suite = _Suite(preset("tiny"), SuiteSettings(budget_s=1.0), device="cpu", dtype="float32",
                   json_path=tmp_path / "rec.json", log=logged.append)
    suite.record = {"parts": {}, "settings": {"views": [3]}, "device": {"type": "cpu"}}
    assert suite.part("big", lambda: 1, needs_s=100) is None
    assert suite.record["parts"]["big"]["status"] == "skipped"
    assert "needs about 100 s" in suite.record["parts"]["big"]["reason"]

    def fails():
        raise ValueError("bad part")

    suite.part("broken", fails)
    assert suite.record["parts"]["broken"]["error"] == "ValueError: bad part"
    assert suite.part("fine", lambda: 7) == 7 and not suite.stop
    start = time.perf_counter()
    suite.part("slow", lambda: time.sleep(30))
    assert time.perf_counter() - start < 20  # interrupted by the budget, not slept out
    assert "time budget of 1 s exhausted" in suite.record["parts"]["slow"]["error"]
    suite.part("after", lambda: 1)
    assert suite.record["parts"]["after"] == {"status": "skipped",
                                              "reason": "the run was interrupted earlier"}
    written = json.loads((tmp_path / "rec.json").read_text())  # rewritten after every part
    assert list(written["parts"]) == ["big", "broken", "fine", "slow", "after"]


def test_an_interrupt_from_outside_ends_the_run_with_the_record_kept(tmp_path):
    suite = _Suite(preset("tiny"), SuiteSettings(), device="cpu", dtype="float32",
                   json_path=tmp_path / "rec.json", log=lambda msg: None)
    suite.record = {"parts": {}, "settings": {"views": [3]}, "device": {"type": "cpu"}}

    def interrupted():
        raise KeyboardInterrupt

    suite.part("first", interrupted)
    suite.part("second", lambda: 1)
    assert suite.stop and suite.record["parts"]["first"]["status"] == "failed"
    assert "interrupted" in suite.record["parts"]["first"]["error"]
    assert suite.record["parts"]["second"]["status"] == "skipped"


def test_a_failed_build_is_recorded_and_everything_else_says_why(tmp_path, monkeypatch, capsys):
    import xr0lab.latency.suite as suite_module
    from xr0lab.cli import main

    def no_memory(*args, **kwargs):
        raise RuntimeError("out of device memory")

    monkeypatch.setattr(suite_module, "build_model", no_memory)
    assert main(["profile", "--suite", "gpu", "--preset", "tiny", "--dry-run",
                 "--out", str(tmp_path)]) == 1
    rec = json.loads((tmp_path / "profile_tiny_cpu.json").read_text())
    assert rec["complete"] is False
    assert rec["parts"]["build"]["error"] == "RuntimeError: out of device memory"
    skipped = {k: v for k, v in rec["parts"].items() if k not in ("build", "plot")}
    assert list(skipped) == list(SuiteSettings.dry_run().part_names()[1:])
    assert all(v == {"status": "skipped", "reason": "no model (build failed)"}
               for v in skipped.values())
    assert (tmp_path / "profile_tiny_cpu.png").read_bytes()[:4] == b"\x89PNG"
    assert "[INCOMPLETE]" in capsys.readouterr().out


def test_hook_overhead_with_a_model_needs_its_inputs(tiny_model):
    from xr0lab.latency.hook_overhead import measure_hook_overhead

    with pytest.raises(ValueError, match="needs inputs="):
        measure_hook_overhead(1, model=tiny_model)


# -- the script handed to the GPU machine --------------------------------------------------------

def test_gpu_profile_script_parses_and_runs_the_suite(tmp_path):
    script = REPO / ".ci" / "gpu-profile"
    subprocess.run(["bash", "-n", str(script)], check=True)
    # A stand-in interpreter: answers the version probe, and for the suite records its
    # arguments and writes the two files the suite would, then fails with status 3.
    fake = tmp_path / "python"
    fake.write_text('#!/usr/bin/env bash\n'
                    'if [ "$1" = "-c" ]; then echo "python 3.x torch fake"; exit 0; fi\n'
                    'echo "$@" > "$OUT/args.txt"\n'
                    'touch "$OUT/profile_xr0_fake.json" "$OUT/profile_xr0_fake.png"\n'
                    'exit 3\n')
    fake.chmod(0o755)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": str(fake), "OUT": str(out), "XR0LAB_GPU_BUDGET_S": "120",
           "XR0LAB_PROFILE_ARGS": "--no-compile"}
    done = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 3  # the suite's status comes back
    assert (out / "args.txt").read_text().split() == [
        "-m", "xr0lab", "profile", "--preset", "xr0", "--device", "cuda", "--suite", "gpu",
        "--out", str(out), "--budget-s", "120", "--no-compile"]
    log = (out / "gpu-profile.log").read_text()
    assert "budget 120 s" in log and "exit status 3" in log
    assert sorted(p.name for p in out.iterdir()) == [
        "args.txt", "gpu-profile.log", "profile_xr0_fake.json", "profile_xr0_fake.png"]


def test_a_gpu_record_is_read_against_its_datasheet_device(dry_run, tmp_path):
    """What notebook 07 shows once a GPU record exists, on the dry run's record re-labelled as an
    H200 run: every stage beside the h200 datasheet prediction, the targets without the CPU note,
    the suite figure, and the notebook's summary text."""
    from xr0lab.latency.records import describe_gpu_profiles, load_profiles
    from xr0lab.plots.latency import plot_suite

    rec = json.loads(json.dumps(dry_run["record"]))
    rec["device"] = {"type": "cuda", "name": "NVIDIA H200"}
    rec["table_device"] = "h200"
    derive(rec, preset("mid"))
    entry = rec["inference"]["3 views"]
    assert set(entry["predictions"]) == {"probe", "h200"}
    rows = entry["comparison"]["h200"]
    assert [r["stage"] for r in rows] == STAGES_2_STEPS
    for r in rows:
        assert r["pred_over_measured"] == pytest.approx(
            entry["predictions"]["h200"][r["stage"]] / entry["stages"][r["stage"]]["p50"])
    assert {t["against"] for t in rec["targets"]} >= {"h200", "probe", "plain"}
    assert not any("note" in t for t in rec["targets"])
    assert set(rec["launch_fit"]) == {"probe", "h200"}
    (tmp_path / "profile_mid_nvidia-h200.json").write_text(json.dumps(rec))
    (loaded,) = load_profiles(tmp_path, device_type="cuda")
    text = describe_gpu_profiles([loaded])
    assert "3 views against h200:" in text and "targets (ratio vs limit" in text
    assert len(plot_suite(loaded).axes) == 3
    assert describe_gpu_profiles([]).startswith("No GPU measurement exists yet")
