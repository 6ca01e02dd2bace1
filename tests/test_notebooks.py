"""Every notebook runs headless, top to bottom, in quick mode (as CI does)."""

import json

import pytest

from xr0lab.workspace.notebooks import NOTEBOOKS, notebook_path, run_notebook
from xr0lab.workspace.paths import figures_dir, repo_root

PRESENT = [name for name, file in NOTEBOOKS.items() if (repo_root() / "notebooks" / file).is_file()]


def _errors(nb):
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
            if o.get("output_type") == "error"]


@pytest.mark.parametrize("name", PRESENT)
def test_notebook_runs_headless(name):
    nb, _ = run_notebook(name, save=False, quick=True, timeout=1800)
    assert not _errors(nb)
    prefix = NOTEBOOKS[name][:2]
    assert list(figures_dir().glob(f"{prefix}_*.png")), f"{name} saved no figures"


def test_walkthrough_summary_written():
    if "walkthrough" not in PRESENT:
        pytest.skip("walkthrough notebook missing")
    summary = json.loads((figures_dir() / "01_summary.json").read_text())
    assert summary["bit_reproducible"] and summary["prefix_kept_exactly"]
    assert summary["xr0_params_total"] == 4_716_274_176


def test_unknown_notebook_is_a_clear_error():
    with pytest.raises(FileNotFoundError, match="known: walkthrough"):
        notebook_path("nope")
