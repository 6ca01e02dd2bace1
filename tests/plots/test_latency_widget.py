"""The what-if widget of notebook 07: a static figure without a frontend, sliders with one."""

import matplotlib.pyplot as plt
import pytest
from matplotlib.figure import Figure

from xr0lab.config import preset
from xr0lab.plots import latency
from xr0lab.workspace import frontend


def _bars(fig):
    """(left, width) of each stage-group bar, in drawing order."""
    return [(round(p.get_x(), 6), round(p.get_width(), 6)) for p in fig.axes[0].patches]


def test_plot_whatif_stacks_the_groups_in_pipeline_order():
    fig = latency.plot_whatif({"dit": 5.0, "vision": 10.0, "prefill": 2.5}, device="h100-sxm")
    # preprocess, vision, prefill, handoff, dit, postprocess; absent groups are zero-width
    assert _bars(fig) == [(0.0, 0.0), (0.0, 10.0), (10.0, 2.5), (12.5, 0.0), (12.5, 5.0),
                          (17.5, 0.0)]
    assert fig.axes[0].get_title() == "predicted 17.5 ms per inference on h100-sxm"
    assert plt.get_fignums() == []


def test_whatif_widget_without_a_frontend_is_the_figure_of_the_release(monkeypatch):
    assert not frontend.has_frontend()  # pytest runs no kernel
    release = latency.whatif()
    fig = latency.whatif_widget()
    assert isinstance(fig, Figure)
    assert [w for _, w in _bars(fig)] == [round(release.get(g, 0.0), 6)
                                         for g in latency.STAGE_GROUPS]
    assert fig.axes[0].get_title() == (f"predicted {sum(release.values()):.1f} ms per inference "
                                       "on rtx4090")
    assert plt.get_fignums() == []
    # static=True wins even where a frontend is attached
    monkeypatch.setattr(frontend, "has_frontend", lambda: True)
    assert isinstance(latency.whatif_widget(static=True), Figure)


def test_whatif_widget_in_a_headless_kernel_is_the_figure(monkeypatch):
    # what the headless runner's kernels see: a kernel, but XR0LAB_HEADLESS=1
    monkeypatch.setattr("IPython.get_ipython", lambda: type("Shell", (), {"kernel": object()})())
    monkeypatch.delenv(frontend.HEADLESS_ENV, raising=False)
    assert frontend.has_frontend()
    monkeypatch.setenv(frontend.HEADLESS_ENV, "1")
    assert isinstance(latency.whatif_widget(), Figure)


@pytest.mark.parametrize("attached, static", [(True, None), (False, False)])
def test_whatif_widget_with_a_frontend_is_sliders_at_the_release(monkeypatch, attached, static):
    import ipywidgets

    monkeypatch.setattr(frontend, "has_frontend", lambda: attached)
    box = latency.whatif_widget(static=static)
    assert isinstance(box, ipywidgets.interactive)
    values = {c.description: c.value for c in box.children[:-1]}
    assert values == {"views": 3, "height": 256, "width": 320, "steps": 5,
                      "vlm_layers": preset("xr0").vlm.num_layers, "launch_us": 5.0,
                      "device": "rtx4090", "fuse elementwise": False}
    assert isinstance(box.children[-1], ipywidgets.Output)
    assert plt.get_fignums() == []  # the first drawing went to the Output, not to pyplot
