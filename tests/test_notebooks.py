"""Every notebook runs headless, top to bottom, in quick mode (as CI does), writing its figures to
the session's temporary figures directory (tests/conftest.py), never into the checkout."""

import json
import os
from pathlib import Path

import pytest

from xr0lab.workspace.notebooks import NOTEBOOKS, notebook_path, run_notebook
from xr0lab.workspace.paths import figures_dir, repo_root

PRESENT = [name for name, file in NOTEBOOKS.items() if (repo_root() / "notebooks" / file).is_file()]


def _errors(nb):
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
            if o.get("output_type") == "error"]


@pytest.mark.parametrize("name", PRESENT)
def test_notebook_runs_headless(name):
    run = run_notebook(name, save=False, quick=True)
    assert not _errors(run.notebook)
    widgets = [o for c in run.notebook.cells for o in c.get("outputs", [])
               if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert widgets == [], "a headless kernel created widgets (explorers must draw figures)"
    assert run.saved_to is None and run.attempts == 1
    assert figures_dir() == Path(os.environ["XR0LAB_FIGURES"])
    prefix = NOTEBOOKS[name][:2]
    assert list(figures_dir().glob(f"{prefix}_*.png")), f"{name} saved no figures"
    if name == "walkthrough":
        summary = json.loads((figures_dir() / "01_summary.json").read_text())
        assert summary["bit_reproducible"] and summary["prefix_kept_exactly"]
        assert summary["xr0_params_total"] == 4_716_274_176
        # Only machine-independent facts: the CPU time the notebook prints stays out.
        assert set(summary) == {"preset", "prompt_tokens", "chunk", "flow_steps",
                                "bit_reproducible", "prefix_kept_exactly", "xr0_params_total",
                                "xr0_params_outside_vlm", "figures"}


def test_unknown_notebook_is_a_clear_error():
    with pytest.raises(FileNotFoundError, match="known: walkthrough"):
        notebook_path("nope")
