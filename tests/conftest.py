"""Shared fixtures. Tests run single-threaded: two busy OpenMP threads on a shared 2-core
machine are many times slower than one.

The suite never writes into the checkout: figures, data reads and scratch sweeps go to a
session's temporary directory (XR0LAB_FIGURES, XR0LAB_DATA holding a copy of data/,
XR0LAB_SCRATCH), and the session fails if figures/, data/ or notebooks/ changed while it ran.
"""

import os
import shutil

import pytest
import torch

import xr0lab
from xr0lab.workspace.paths import changed_files, repo_root

_OUTPUTS = ("figures", "data", "notebooks")   # where a test that forgot the redirect would write


def pytest_sessionstart(session):
    session.config._xr0lab_outputs = changed_files(repo_root(), _OUTPUTS)


def pytest_sessionfinish(session, exitstatus):
    before = getattr(session.config, "_xr0lab_outputs", None)
    if before is None:   # not a git checkout
        return
    after = changed_files(repo_root(), _OUTPUTS) or {}
    touched = sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))
    if touched:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        message = ("files in the checkout changed while the tests ran (tests must write to a "
                   "temporary directory; if you edited them yourself meanwhile, run again): "
                   + ", ".join(touched))
        if reporter is not None:
            reporter.write_line(f"ERROR: {message}", red=True, bold=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session", autouse=True)
def _outputs_outside_the_checkout(tmp_path_factory):
    base = tmp_path_factory.mktemp("xr0lab")
    data = base / "data"
    if (repo_root() / "data").is_dir():
        shutil.copytree(repo_root() / "data", data)
    else:
        data.mkdir()
    (base / "scratch").mkdir()   # shared by the session's notebooks: 05 and 06 reuse one CI sweep
    redirect = {"XR0LAB_FIGURES": str(base / "figures"), "XR0LAB_DATA": str(data),
                "XR0LAB_SCRATCH": str(base / "scratch")}
    saved = {k: os.environ.get(k) for k in redirect}
    os.environ.update(redirect)
    yield base
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_config():
    return xr0lab.preset("tiny")


@pytest.fixture(scope="session")
def tiny_model(tiny_config):
    torch.manual_seed(0)
    return xr0lab.XR0Model(tiny_config).eval()


@pytest.fixture(scope="session")
def tiny_async_model(tiny_model):
    """Same weights as tiny_model, xr0-async mode (Λ band w=4, +10 offset, prefixes)."""
    model = xr0lab.XR0Model(tiny_model.config.with_mode("xr0-async"), vlm=tiny_model.vlm).eval()
    model.load_state_dict(tiny_model.state_dict())
    return model


@pytest.fixture(scope="session")
def example_inputs(tiny_config):
    return xr0lab.make_example_inputs(tiny_config, batch_size=2, seed=0)
