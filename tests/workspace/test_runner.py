"""The headless runner on tiny temporary notebooks: the per-cell limit names the cell, a dead
kernel gets one retry, the kernel runs headless over IPC, quick runs never save into notebooks/."""

import json

import nbformat
import pytest

from xr0lab.workspace.notebooks import (NotebookRunError, notebook_path, run_notebook,
                                        saved_path)
from xr0lab.workspace.paths import quick_dir


def _notebook(path, *sources, markdown_first=True):
    cells = [nbformat.v4.new_markdown_cell("# a test notebook")] if markdown_first else []
    cells += [nbformat.v4.new_code_cell(src) for src in sources]
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)
    return path


def _stdout(nb, index):
    return "".join(o.get("text", "") for o in nb.cells[index].outputs
                   if o.get("output_type") == "stream")


def test_a_cell_past_the_limit_fails_fast_naming_it(tmp_path):
    path = _notebook(tmp_path / "slow.ipynb", "x = 1", "import time\ntime.sleep(5)", "y = 2")
    with pytest.raises(NotebookRunError) as info:
        run_notebook(path, timeout=1, save=False)
    assert str(info.value).startswith(
        "slow.ipynb: cell 2 ('import time') was still running after 1 s, the per-cell limit")


def test_a_failing_cell_is_named(tmp_path):
    path = _notebook(tmp_path / "bad.ipynb", "\n# comment line\nraise ValueError('boom')")
    with pytest.raises(NotebookRunError) as info:
        run_notebook(path, save=False)
    message = str(info.value)
    assert message.startswith("bad.ipynb: cell 1 ('# comment line') raised ValueError: boom\n")
    assert "----> 2 raise ValueError('boom')" in message and "\x1b" not in message


def test_a_dead_kernel_is_retried_once_and_says_so(tmp_path, capsys):
    marker = tmp_path / "died-once"
    path = _notebook(tmp_path / "dies.ipynb",
                     f"import os, pathlib\nmarker = pathlib.Path({str(marker)!r})\n"
                     "if not marker.exists():\n    marker.touch()\n    os._exit(1)",
                     "print('second run')")
    run = run_notebook(path, save=False)
    assert run.attempts == 2 and marker.exists()
    assert _stdout(run.notebook, 2) == "second run\n"
    assert ("xr0lab: dies.ipynb: the kernel died in cell 1 ('import os, pathlib'); retrying once "
            "with a fresh kernel") in capsys.readouterr().err


def test_a_kernel_that_dies_twice_is_an_error(tmp_path):
    path = _notebook(tmp_path / "always.ipynb", "import os\nos._exit(3)", markdown_first=False)
    with pytest.raises(NotebookRunError,
                       match=r"always.ipynb: the kernel died in cell 0 \('import os'\), again "
                             r"after a retry"):
        run_notebook(path, save=False)


def test_the_kernel_runs_headless_over_ipc_and_saves_in_place(tmp_path, capfd):
    path = _notebook(tmp_path / "env.ipynb",
                     "import os\nfrom IPython import get_ipython\n"
                     "from xr0lab.workspace.frontend import has_frontend\n"
                     "print(get_ipython().kernel is not None, has_frontend(),\n"
                     "      os.environ['XR0LAB_HEADLESS'], os.environ['XR0LAB_QUICK'],\n"
                     "      os.path.isdir(os.environ['XR0LAB_SCRATCH']))")
    run = run_notebook(path, save=True, quick=False)
    # A real kernel (where has_frontend would be True), told that no frontend is attached.
    assert _stdout(run.notebook, 1) == "True False 1 0 True\n"
    assert "without encryption" not in capfd.readouterr().err   # IPC, not plain TCP
    assert run.saved_to == path and run.slowest_cell == 1 and run.slowest_seconds > 0
    saved = json.loads(path.read_text())
    assert saved["cells"][1]["outputs"][0]["text"] == ["True False 1 0 True\n"]


def test_quick_runs_save_outside_notebooks():
    path = notebook_path("walkthrough")
    assert saved_path(path, quick=False) == path
    assert saved_path(path, quick=True) == quick_dir() / "notebooks" / path.name
    assert "runs" in saved_path(path, quick=True).relative_to(path.parents[1]).parts


def test_a_missing_notebook_path_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no notebook at .*missing.ipynb"):
        notebook_path(tmp_path / "missing.ipynb")
