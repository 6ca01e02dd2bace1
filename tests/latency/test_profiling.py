"""Stage timers on the tiny model: stage names, contiguity, hook clean-up, records, the `xr0lab
profile` command. No timing claims here: ratios come from
`xr0lab profile --overhead/--speed-options`, printed side by side."""

from __future__ import annotations

import json

import pytest
import torch

from xr0lab.latency.devices import Device
from xr0lab.latency.pipeline import build_pipeline, profile_config, workload_of
from xr0lab.latency.profile import profile
from xr0lab.latency.records import SCHEMA, load_profiles, make_record, stage_table
from xr0lab.latency.timers import StageTimer

FAKE_DEVICE = Device("cpu", 1e10, 1e10, 1e-6, source="test")


@pytest.fixture(scope="module")
def pipeline(tiny_model, tiny_config):
    return build_pipeline(tiny_config, model=tiny_model, views=2, image_hw=(64, 64),
                          num_steps=3)


def _hooks(model):
    mods = (model.vlm.model.visual, model.vlm.model.language_model, model.hook_actions)
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in mods)


def test_stages_are_named_contiguous_and_cover_the_inference(pipeline):
    with StageTimer(pipeline.model) as timer:
        pipeline.run(timer)
        stages = timer.stages()
        begin, end = timer.marks[0][1], timer.marks[-1][1]
    assert list(stages) == ["preprocess", "vision", "prefill", "handoff", "dit_step_0",
                            "dit_step_1", "dit_step_2", "postprocess"]
    assert all(v >= 0 for v in stages.values())
    assert sum(stages.values()) == pytest.approx(end - begin, rel=1e-9)


def test_cuda_event_branch_reads_milliseconds_after_one_synchronise(pipeline, monkeypatch):
    """The GPU path of the timer, driven by a stand-in for torch.cuda events on this CPU box:
    events record a host clock, elapsed_time answers in milliseconds (as CUDA's does), and the
    device is synchronised once, before any event is read."""
    import time

    log = []

    class FakeEvent:
        def __init__(self, enable_timing=False):
            assert enable_timing, "timing events must be created with enable_timing=True"
            self.t = None

        def record(self):
            self.t = time.perf_counter()

        def elapsed_time(self, other):
            assert log == ["sync"], "an event was read before the device was synchronised"
            return (other.t - self.t) * 1e3

    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: log.append("sync"))
    with StageTimer(pipeline.model, device_type="cuda") as timer:
        pipeline.run(timer)
        assert all(isinstance(m, FakeEvent) for _, m in timer.marks)
        stages = timer.stages()
    begin, end = timer.marks[0][1].t, timer.marks[-1][1].t
    assert list(stages)[:4] == ["preprocess", "vision", "prefill", "handoff"]
    # Seconds, not milliseconds: the stages add up to the host time between the outer marks.
    assert sum(stages.values()) == pytest.approx(end - begin, rel=1e-9)
    assert 0 < sum(stages.values()) < 10


def test_hooks_and_step_wrapper_are_removed_even_on_error(pipeline):
    model = pipeline.model
    before = _hooks(model)
    with pytest.raises(RuntimeError, match="boom"):
        with StageTimer(model):
            assert _hooks(model) == before + 5 and "denoise_step" in model.__dict__
            raise RuntimeError("boom")
    assert _hooks(model) == before and "denoise_step" not in model.__dict__


def test_timed_and_untimed_inference_agree(pipeline):
    plain = pipeline.run()
    with StageTimer(pipeline.model) as timer:
        timed = pipeline.run(timer)
    torch.testing.assert_close(timed, plain, rtol=0, atol=0)


def test_profile_record_is_json_and_matches_the_cost_model(pipeline, tiny_config, tmp_path):
    result = profile(pipeline, repeats=2, warmup=1)
    assert len(result["warmup"]) == 1 and result["total"]["n"] == 2
    assert {"p50", "p95", "p99"} <= set(result["stages"]["vision"])
    rec = make_record(tiny_config, pipeline, result, settings={"repeats": 2}, dtype="float32",
                      probe=FAKE_DEVICE)
    assert rec["schema"] == SCHEMA and rec["device"]["type"] == "cpu"
    assert {"torch", "transformers", "xr0lab"} <= set(rec["versions"])
    assert set(rec["predictions"]["probe"]) == set(rec["stages"])
    (tmp_path / "profile_tiny_cpu.json").write_text(json.dumps(rec))
    gpu = dict(rec, device={"type": "cuda", "name": "NVIDIA H100 80GB HBM3"})
    (tmp_path / "profile_xr0_h100.json").write_text(json.dumps(gpu))
    assert [r["device"]["type"] for r in load_profiles(tmp_path, device_type="cuda")] == ["cuda"]
    assert len(load_profiles(tmp_path)) == 2
    assert [r["stage"] for r in stage_table(rec)][:2] == ["preprocess", "vision"]


def test_workload_of_reproduces_the_prompt(pipeline, tiny_config):
    w = workload_of(pipeline, tiny_config, "float32")
    inputs = pipeline.preprocess()
    s = w.resolve(tiny_config)
    assert s.prompt_length == inputs["input_ids"].shape[1]
    assert (s.views, w.image_hw, s.num_steps) == (2, (64, 64), 3)


def test_profile_presets():
    mid = profile_config("mid")
    assert (mid.vlm.num_layers, mid.vlm.hidden_size, mid.dit.num_layers,
            mid.dit.hidden_size) == (8, 512, 8, 512)
    assert profile_config("tiny", num_steps=2).flow.num_steps == 2
    with pytest.raises(ValueError, match="available"):
        profile_config("huge")


def test_dit_loop_comparison_in_the_record(pipeline):
    from xr0lab.latency.devices import get_device
    from xr0lab.latency.profile import dit_loop_comparison

    loop = dit_loop_comparison(pipeline, get_device("rtx4090"), repeats=2)
    assert loop["cuda_graph"] is False and loop["roofline_device"] == "rtx4090"
    assert loop["static_p50_s"] > 0 and loop["roofline_s"] > 0
    # the profile summary line reads the same fields
    assert {"eager_p50_s", "static_over_eager", "static_over_roofline"} <= loop.keys()


def test_profile_command_help(capsys):
    from xr0lab.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["profile", "--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert "usage: xr0lab profile" in out
    assert all(flag in out
               for flag in ("--preset", "--image-size", "--overhead", "--speed-options"))


def test_profile_command_writes_the_record_and_its_plot(tmp_path, capsys):
    from xr0lab.cli import main

    argv = ["--preset", "tiny", "--views", "1", "--image-size", "32", "32", "--steps", "2",
            "--repeats", "1", "--warmup", "0", "--out", str(tmp_path), "--tag", "cli"]
    assert main(["profile", *argv]) == 0
    rec = json.loads((tmp_path / "profile_tiny_cpu_cli.json").read_text())
    assert rec["schema"] == SCHEMA and rec["settings"]["argv"] == argv
    assert rec["settings"]["num_steps"] == 2 and rec["total"]["n"] == 1
    assert (tmp_path / "profile_tiny_cpu_cli.png").read_bytes()[:4] == b"\x89PNG"
    assert f"wrote {tmp_path / 'profile_tiny_cpu_cli.json'}" in capsys.readouterr().out


@pytest.mark.parametrize("value", ["-1", "nan", "fast"])
def test_predict_refuses_a_bad_launch_overhead_as_a_usage_error(value, capsys):
    from xr0lab.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "--launch-overhead-us", value])
    assert exit_info.value.code == 2
    assert "--launch-overhead-us" in capsys.readouterr().err
