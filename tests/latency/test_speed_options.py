"""Speed options: one list, predicted as workloads and built as pipelines."""

from __future__ import annotations

import pytest

from xr0lab.config import preset
from xr0lab.latency.devices import get_device
from xr0lab.latency.pipeline import build_pipeline
from xr0lab.latency.profile import speed_option_pipelines
from xr0lab.latency.roofline import speed_option_table
from xr0lab.latency.speed_options import speed_options, workload_variants
from xr0lab.latency.workload import RELEASED

XR0 = preset("xr0")


def test_released_variants_change_one_knob_each():
    variants = workload_variants(RELEASED, XR0)
    assert list(variants) == ["baseline", "steps 5->2", "steps 5->1", "VLM layers 36->27",
                              "views 3->2", "resolution 256x320->128x160"]
    assert variants["baseline"] == RELEASED
    assert variants["steps 5->2"].num_steps == 2
    # a quarter of the VLM, never below the 16 layers the DiT pairs: the DiT is unchanged
    assert (variants["VLM layers 36->27"].vlm_layers, variants["VLM layers 36->27"].dit_layers) \
        == (27, None)
    assert variants["resolution 256x320->128x160"].image_hw == (128, 160)


def test_step_counts_are_listed_once_and_only_below_the_baseline():
    def labels(steps):
        return [o.label for o in speed_options(XR0, num_steps=steps, views=1, image_hw=(32, 32),
                                               vlm_layers=36, dit_layers=16,
                                               fewer_steps=(max(1, steps // 2), 1), vlm_cut=27)]

    assert labels(1) == ["baseline", "VLM layers 36->27"]
    assert labels(2) == ["baseline", "steps 2->1", "VLM layers 36->27"]


def test_a_cut_below_the_dit_shrinks_it():
    (opt,) = [o for o in speed_options(XR0, num_steps=5, views=1, image_hw=(32, 32),
                                       vlm_layers=36, dit_layers=16, fewer_steps=(),
                                       vlm_cut=12) if o.vlm_layers]
    assert (opt.label, opt.vlm_layers, opt.dit_layers) == ("VLM layers 36->12 (DiT 16->12)", 12, 12)


def test_prediction_table_covers_the_variants_and_the_fused_baseline():
    rows = speed_option_table(XR0, RELEASED, get_device("rtx4090"))
    assert [r[0] for r in rows] == [*workload_variants(RELEASED, XR0),
                                    "elementwise ops fused (compile)"]
    assert rows[0][2] == 1.0 and all(r[2] < 1 for r in rows[1:])


def test_measured_pipelines_use_the_same_list(tiny_model, tiny_config):
    base = build_pipeline(tiny_config, model=tiny_model, views=2, image_hw=(64, 64))
    pipes = speed_option_pipelines(tiny_config, base, device="cpu", dtype="float32", views=2,
                                   image_hw=(64, 64))
    assert list(pipes) == ["baseline", "steps 5->1", "VLM layers 8->4", "views 2->1",
                           "resolution 64x64->32x32"]
    assert pipes["baseline"][0] is base and pipes["baseline"][1] == tiny_config
    assert pipes["steps 5->1"][0].num_steps == 1
    cut, cut_config = pipes["VLM layers 8->4"]
    assert cut_config.vlm.num_layers == 4 and cut.model is not base.model
    assert pipes["views 2->1"][0].model is base.model
    assert pipes["views 2->1"][0].preprocess()["image_grid_thw"].shape[0] == 1


@pytest.mark.parametrize("cut", [0, 8])
def test_no_vlm_option_when_the_cut_changes_nothing(cut):
    assert not [o for o in speed_options(XR0, num_steps=1, views=1, image_hw=(32, 32),
                                         vlm_layers=8, dit_layers=4, fewer_steps=(),
                                         vlm_cut=cut) if o.vlm_layers]
