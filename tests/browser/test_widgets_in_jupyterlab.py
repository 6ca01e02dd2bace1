"""The explorers work in a real JupyterLab: each notebook with one (02, 03, 07) runs top to
bottom in quick mode in headless Chromium, the three side by side, then a slider and a dropdown
(or a second slider) of its explorer are moved, and each time the figure the kernel sends back
must differ from the one before (the PNG payload in the page, not a widget-state readback).
Screenshots of the explorer before and after each change are kept as artifacts (their folder is
printed in the test summary). Server, browser and kernel setup: conftest.py.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest

# Quick mode runs each of these notebooks in one to two minutes of CPU on a shared 2-core machine;
# the limits are several times that, so only a hang or a broken widget reaches them.
RUN_TIMEOUT_S = 600
KERNEL_READY_TIMEOUT_S = 120
REDRAW_TIMEOUT_S = 120
JS_TIMEOUT_MS = 30_000


@dataclass(frozen=True)
class Change:
    kind: str        # "slider": one step right; "dropdown": select `value`
    label: str       # the control's description, as shown next to it
    value: str = ""


@dataclass(frozen=True)
class Explorer:
    notebook: str
    call: str        # text that identifies the explorer's cell
    changes: tuple[Change, ...]


EXPLORERS = [
    Explorer("02_masks_and_kv_conditioning.ipynb", "widgets.attention_explorer(",
             (Change("slider", "flow step"), Change("dropdown", "head", "0"))),
    Explorer("03_flow_matching_trajectories.ipynb", "widgets.flow_explorer(",
             (Change("slider", "flow step"), Change("slider", "action dim"))),
    Explorer("07_latency_profiling_rtx4090.ipynb", "latency_plots.whatif_widget(",
             (Change("slider", "steps"), Change("dropdown", "device", "h100-sxm"))),
]

# The notebook panel of `path`, kept on window for the later calls.
_FIND_PANEL = """(path) => {
  const app = window.jupyterapp;
  if (!app) return false;
  const panel = Array.from(app.shell.widgets('main'))
    .find(w => w.context && w.context.path === path);
  if (!panel || !panel.context.isReady || !panel.sessionContext) return false;
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  if (!kernel || kernel.connectionStatus !== 'connected' || kernel.status !== 'idle') return false;
  window.__xr0lab_panel = panel;
  return true;
}"""

_STATE = """() => {
  const panel = window.__xr0lab_panel;
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  const cells = panel.content.widgets.filter(c => c.model.type === 'code');
  const prompt = c => (c.node.querySelector('.jp-InputPrompt') || {}).textContent || '';
  const errors = [];
  cells.forEach((c, i) => {
    for (let k = 0; k < c.model.outputs.length; k++) {
      const o = c.model.outputs.get(k).toJSON();
      if (o.output_type === 'error') errors.push(`code cell ${i}: ${o.ename}: ${o.evalue}`);
    }
  });
  return {kernel: kernel ? kernel.status : 'none', total: cells.length,
          executed: cells.filter(c => c.model.executionCount !== null).length,
          busy: cells.filter(c => prompt(c).includes('*')).length, errors};
}"""

_MARK_CELL = """(call) => {
  const cells = window.__xr0lab_panel.content.widgets;
  const found = cells.filter(
    c => c.model.type === 'code' && c.model.sharedModel.getSource().includes(call));
  if (found.length !== 1) return `${found.length} code cells contain ${call}`;
  found[0].node.setAttribute('data-xr0lab-explorer', '1');
  found[0].node.scrollIntoView();
  return '';
}"""


def _js_with_timeout(body: str) -> str:
    """An async page function that gives up after JS_TIMEOUT_MS (page.evaluate itself waits
    forever on a promise that never settles)."""
    return f"""async () => Promise.race([
      (async () => {{ {body} }})(),
      new Promise((_, reject) =>
        setTimeout(() => reject(new Error('timed out')), {JS_TIMEOUT_MS}))])"""


def _wait_for_run(page, timeout_s: float) -> dict:
    """Poll until the kernel is idle with no cell queued and every code cell executed, or an
    error stopped the run. Idle must hold on two polls in a row: between two cells of a run the
    kernel is briefly idle."""
    deadline, settled, state = time.monotonic() + timeout_s, 0, {}
    while time.monotonic() < deadline:
        state = page.evaluate(_STATE)
        if state["kernel"] in ("autorestarting", "restarting", "dead"):
            # JupyterLab restarts a dead kernel by itself; the run would then wait forever.
            pytest.fail(f"the kernel died during the run: {state}", pytrace=False)
        quiet = state["kernel"] == "idle" and state["busy"] == 0
        finished = state["executed"] == state["total"] or state["errors"]
        settled = settled + 1 if quiet and finished else 0
        if settled >= 2:
            return state
        page.wait_for_timeout(1000)
    pytest.fail(f"the notebook did not finish within {timeout_s} s: {state}", pytrace=False)


def _figure_src(output) -> str:
    return output.locator("img").first.get_attribute("src") or ""


def _change(output, change: Change) -> str:
    """Apply one change to the explorer; returns the control's value as shown afterwards."""
    page = output.page
    label = page.locator(f'label.widget-label:text-is("{change.label}")')
    if change.kind == "slider":
        box = output.locator(".widget-slider").filter(has=label)
        assert box.count() == 1, f"no single slider labelled {change.label!r}"
        readout = box.locator(".widget-readout")
        before = readout.inner_text()
        box.locator(".noUi-handle").focus()
        box.locator(".noUi-handle").press("ArrowRight")
        page.wait_for_function("([el, before]) => el.textContent.trim() !== before.trim()",
                               arg=[readout.element_handle(), before], timeout=JS_TIMEOUT_MS)
        return readout.inner_text()
    if change.kind == "dropdown":
        box = output.locator(".widget-dropdown").filter(has=label)
        assert box.count() == 1, f"no single dropdown labelled {change.label!r}"
        box.locator("select").select_option(label=change.value)
        return change.value
    raise ValueError(f"unknown change kind {change.kind!r}; expected 'slider' or 'dropdown'")


@dataclass
class Run:
    """One notebook opened and set running by the `runs` fixture."""
    page: Any = None
    started: float = 0.0
    problem: str = ""   # why it could not be started, or ""


@pytest.fixture(scope="module")
def runs(request, local_page, jupyterlab, artifacts_dir) -> dict[str, Run]:
    """Every selected explorer notebook opened in its own page and running: kernels compute side
    by side (one thread each) while the tests below wait for them in turn, which on two cores
    takes about half as long as one notebook after the other."""
    selected = {item.callspec.params["explorer"] for item in request.session.items
                if "explorer" in getattr(getattr(item, "callspec", None), "params", {})}
    runs = {}
    for e in (e for e in EXPLORERS if e in selected):
        if not (jupyterlab.root / e.notebook).is_file():
            runs[e.notebook] = Run(problem=f"{e.notebook} is not in notebooks/")
            continue
        page = local_page()
        # A workspace per notebook, reset, so JupyterLab opens this notebook and only this one.
        page.goto(f"{jupyterlab.url}/lab/workspaces/{e.notebook[:2]}/tree/{quote(e.notebook)}"
                  f"?reset&token={jupyterlab.token}")
        runs[e.notebook] = Run(page, time.monotonic())
    for e in (e for e in EXPLORERS if e in selected):
        run, stem = runs[e.notebook], e.notebook.removesuffix(".ipynb")
        if run.problem:
            continue
        try:
            run.page.wait_for_function(_FIND_PANEL, arg=e.notebook, polling=500,
                                       timeout=KERNEL_READY_TIMEOUT_S * 1000)
            name = run.page.evaluate("() => window.__xr0lab_panel.sessionContext.kernelDisplayName")
            if name != jupyterlab.kernel_display_name:
                run.problem = f"JupyterLab started the kernel {name!r}, not the test's own"
                continue
            run.page.evaluate(_js_with_timeout(
                "window.jupyterapp.shell.activateById(window.__xr0lab_panel.id);"
                "window.jupyterapp.commands.execute('notebook:run-all-cells'); return true;"))
        except Exception as exc:  # one notebook that cannot start must not fail the others
            run.page.screenshot(path=artifacts_dir / f"{stem}-not-started.png")
            run.problem = (f"no idle kernel within {KERNEL_READY_TIMEOUT_S} s ({exc}); "
                           f"server log:\n{jupyterlab.log_tail()}")
    return runs


@pytest.mark.parametrize("explorer", EXPLORERS, ids=[e.notebook[:2] for e in EXPLORERS])
def test_explorer_redraws_when_a_control_moves(runs, artifacts_dir, explorer):
    run, stem = runs[explorer.notebook], explorer.notebook.removesuffix(".ipynb")
    if run.problem:
        pytest.fail(f"{explorer.notebook}: {run.problem}", pytrace=False)
    page = run.page
    try:
        state = _wait_for_run(page, RUN_TIMEOUT_S)
        assert not state["errors"], f"{explorer.notebook} raised: {state['errors']}"
        assert state["executed"] == state["total"], state
        run_s = time.monotonic() - run.started

        problem = page.evaluate(_MARK_CELL, explorer.call)
        assert not problem, f"{explorer.notebook}: {problem}"
        output = page.locator("[data-xr0lab-explorer] .jp-OutputArea").first
        controls = output.locator(".widget-slider, .widget-dropdown")
        if controls.count() == 0:
            output.screenshot(path=artifacts_dir / f"{stem}-0-initial.png")
            pytest.fail(f"{explorer.notebook}: the explorer shows no controls (a static figure "
                        "means has_frontend() was False inside JupyterLab)", pytrace=False)
        output.locator("img").first.wait_for(timeout=REDRAW_TIMEOUT_S * 1000)
        figure = _figure_src(output)
        assert figure.startswith("data:image/png;base64,"), figure[:80]
        shots = [output.screenshot(path=artifacts_dir / f"{stem}-0-initial.png")]

        for n, change in enumerate(explorer.changes, 1):
            shown = _change(output, change)
            try:
                page.wait_for_function(
                    "([el, before]) => { const img = el.querySelector('img');"
                    " return !!img && img.src !== before; }",
                    arg=[output.element_handle(), figure], timeout=REDRAW_TIMEOUT_S * 1000)
            except Exception:
                output.screenshot(path=artifacts_dir / f"{stem}-{n}-no-redraw.png")
                pytest.fail(f"{explorer.notebook}: {change.label} = {shown} did not redraw the "
                            f"figure within {REDRAW_TIMEOUT_S} s; the output shows:\n"
                            f"{output.inner_text()[:2000]}", pytrace=False)
            _wait_for_run(page, REDRAW_TIMEOUT_S)  # the callback has finished drawing
            new = _figure_src(output)
            assert new.startswith("data:image/png;base64,") and new != figure
            stderr = output.locator('[data-mime-type="application/vnd.jupyter.stderr"]')
            assert stderr.count() == 0, stderr.first.inner_text()
            figure = new
            label = f"{change.label}={shown}".replace(" ", "_")
            shots.append(output.screenshot(path=artifacts_dir / f"{stem}-{n}-{label}.png"))
            assert shots[-1] != shots[-2]
        page.screenshot(path=artifacts_dir / f"{stem}-page.png")
        print(f"{explorer.notebook}: finished {run_s:.0f} s after it was opened, "
              f"{len(explorer.changes)} redraws; screenshots in {artifacts_dir}; "
              f"blocked requests: {page.blocked_requests}")
    finally:
        # Frees the kernel's CPU and memory for the notebooks still running; the server's
        # shutdown stops it anyway, so a page that can no longer answer is no second failure.
        try:
            page.evaluate(_js_with_timeout(
                "if (window.__xr0lab_panel) await window.__xr0lab_panel.sessionContext.shutdown();"
                " return true;"))
        except Exception:
            pass
