"""No widget without a frontend: explorers fall back to their static figure when the kernel was
started headless, and progress bars stay silent when their output is not a terminal."""

import io
import types

import pytest
import torch
from matplotlib.figure import Figure

from xr0lab.flow import FlowTrace
from xr0lab.plots import widgets
from xr0lab.workspace import frontend


@pytest.fixture
def fake_kernel(monkeypatch):
    """get_ipython() returns a shell with a kernel, as inside Jupyter."""
    import IPython
    import matplotlib.pyplot as plt

    plt.close(plt.figure())   # pyplot picks its backend now, while get_ipython() is still None
    monkeypatch.setattr(IPython, "get_ipython",
                        lambda: types.SimpleNamespace(kernel=object()))
    monkeypatch.delenv(frontend.HEADLESS_ENV, raising=False)


def _trace():
    steps, batch, chunk, dims = 3, 1, 4, 2
    t = torch.linspace(0, 1, steps)
    x = torch.arange(steps * batch * chunk * dims, dtype=torch.float32).reshape(steps, batch,
                                                                                 chunk, dims)
    return FlowTrace(t=t, x_t=x, velocity=x, clean_estimate=x + 1, x_next=x), x[-1]


def test_no_kernel_no_frontend(monkeypatch):
    monkeypatch.delenv(frontend.HEADLESS_ENV, raising=False)
    assert not frontend.has_frontend()


def test_a_kernel_is_a_frontend_unless_started_headless(fake_kernel, monkeypatch):
    assert frontend.has_frontend() and widgets.has_frontend is frontend.has_frontend
    monkeypatch.setenv(frontend.HEADLESS_ENV, "1")
    assert not frontend.has_frontend()


def test_explorers_draw_their_static_figure_headless(fake_kernel, monkeypatch):
    import ipywidgets

    trace, final = _trace()
    assert isinstance(widgets.flow_explorer(trace, final), ipywidgets.VBox)  # a frontend: widget
    monkeypatch.setenv(frontend.HEADLESS_ENV, "1")
    created = []
    monkeypatch.setattr(ipywidgets.Widget, "open", lambda self: created.append(self))
    fig = widgets.flow_explorer(trace, final)
    assert isinstance(fig, Figure) and created == []                      # headless: no widget
    assert fig.axes[0].get_title() == "dim 0, flow step 0 (t = 0.00)"      # the initial selection


def test_progress_writes_nothing_into_a_log(monkeypatch):
    monkeypatch.delenv(frontend.HEADLESS_ENV, raising=False)
    log = io.StringIO()                                                   # not a terminal
    assert list(frontend.progress(range(3), desc="cells", file=log)) == [0, 1, 2]
    assert log.getvalue() == ""


def test_progress_draws_on_a_terminal_unless_disabled():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    screen = Terminal()
    list(frontend.progress(range(3), desc="cells", file=screen))
    assert "cells: 100%" in screen.getvalue()
    quiet = Terminal()
    list(frontend.progress(range(3), desc="cells", file=quiet, enabled=False))
    assert quiet.getvalue() == ""
