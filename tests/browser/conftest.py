"""A private JupyterLab and a headless Chromium for the widget tests.

The server listens on 127.0.0.1 only, on a free port, behind a random token; its root is a
temporary copy of notebooks/ with outputs cleared (the tracked ones are never opened); its
kernels are this interpreter (a kernelspec written for the run, so a "python3" kernel elsewhere
on the machine cannot be picked instead); its Jupyter config, data and settings directories are
temporary too, so a user's own JupyterLab setup neither leaks in nor gets touched. Kernels
inherit XR0LAB_QUICK=1 and a temporary XR0LAB_FIGURES. The browser may fetch from that server
alone.

Chromium is the system's (Debian: `apt-get install chromium`; XR0LAB_CHROMIUM names another
executable), driven by Playwright's Python API; Playwright's own browser download is never used.
`bash .ci/browser-setup` installs both. Without them the tests skip, except under CI=true, where
they fail: CI installs them, so a missing browser there is a broken setup, not a reason to pass.
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from xr0lab.workspace.paths import repo_root

KERNEL_NAME = "python3"  # what the notebooks' metadata asks for
KERNEL_DISPLAY_NAME = "xr0lab browser test"
SERVER_START_TIMEOUT_S = 90
SERVER_STOP_TIMEOUT_S = 30
_TRUE = ("1", "true", "yes")


def chromium_executable() -> str | None:
    named = os.environ.get("XR0LAB_CHROMIUM")
    if named:
        return named if os.access(named, os.X_OK) else None
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def missing_browser() -> str | None:
    """Why the browser tests cannot run here, or None."""
    missing = []
    if importlib.util.find_spec("playwright") is None:
        missing.append("the playwright package (pip install -e '.[browser]')")
    if chromium_executable() is None:
        missing.append("a chromium executable (apt-get install chromium, or set XR0LAB_CHROMIUM)")
    if not missing:
        return None
    return ("browser tests need " + " and ".join(missing)
            + "; `bash .ci/browser-setup` installs both")


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in _TRUE


@pytest.fixture(scope="session")
def chromium_path() -> str:
    reason = missing_browser()
    if reason:
        if _in_ci():
            pytest.fail(f"CI=true but {reason[0].lower()}{reason[1:]}", pytrace=False)
        pytest.skip(reason)
    return chromium_executable()


_ARTIFACTS: list[Path] = []


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Screenshots land here (runs/browser-artifacts/, ignored by git; XR0LAB_BROWSER_ARTIFACTS
    elsewhere), overwritten by the next run; the path is printed in the test summary."""
    path = Path(os.environ.get("XR0LAB_BROWSER_ARTIFACTS",
                               repo_root() / "runs" / "browser-artifacts"))
    path.mkdir(parents=True, exist_ok=True)
    _ARTIFACTS.append(path)
    return path


def pytest_terminal_summary(terminalreporter):
    for path in _ARTIFACTS:
        terminalreporter.write_line(f"browser test screenshots: {path}")


@dataclass
class Lab:
    url: str          # http://127.0.0.1:PORT, no trailing slash
    token: str
    root: Path        # the temporary copy of notebooks/
    log: Path
    kernel_display_name: str = KERNEL_DISPLAY_NAME

    def log_tail(self, chars: int = 4000) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return text[-chars:].replace(self.token, "<token>")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))


def _clear_outputs(path: Path) -> None:
    """Committed outputs and widget state would let a stale figure pass for a fresh one, and the
    committed execution counts would make a notebook look finished before it has started."""
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    nb.get("metadata", {}).pop("widgets", None)
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


def _prepare(base: Path) -> tuple[Path, dict[str, str]]:
    """The notebook copy and the server's environment, all under `base`."""
    root = base / "notebooks"
    shutil.copytree(repo_root() / "notebooks", root,
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    for path in root.glob("*.ipynb"):
        _clear_outputs(path)
    config, data = base / "jupyter-config", base / "jupyter-data"
    _write_json(data / "kernels" / KERNEL_NAME / "kernel.json", {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": KERNEL_DISPLAY_NAME, "language": "python"})
    settings = config / "lab" / "user-settings" / "@jupyterlab"
    # Every cell stays in the DOM (no virtual scrolling), so an explorer's output is always there.
    _write_json(settings / "notebook-extension" / "tracker.jupyterlab-settings",
                {"windowingMode": "none"})
    # Nothing asks to reach the internet: no news, no update check, no extension manager.
    _write_json(settings / "apputils-extension" / "notification.jupyterlab-settings",
                {"fetchNews": "false", "checkForUpdates": False})
    _write_json(settings / "extensionmanager-extension" / "plugin.jupyterlab-settings",
                {"enabled": False})
    # The copy is thrown away; autosave would only add disk writes while kernels compute.
    _write_json(settings / "docmanager-extension" / "plugin.jupyterlab-settings",
                {"autosave": False})
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "XR0LAB_"))}
    env.update({
        "JUPYTER_CONFIG_DIR": str(config), "JUPYTER_DATA_DIR": str(data),
        "JUPYTER_PATH": str(data), "JUPYTER_RUNTIME_DIR": str(base / "jupyter-runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(config / "lab" / "user-settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(config / "lab" / "workspaces"),
        "JUPYTER_PLATFORM_DIRS": "1", "IPYTHONDIR": str(base / "ipython"),
        # Kernels inherit these. XR0LAB_HEADLESS stays unset: this frontend renders widgets.
        "XR0LAB_QUICK": "1", "XR0LAB_FIGURES": str(base / "figures"),
        "XR0LAB_SCRATCH": str(base / "scratch"),
        "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
        # figures as image/png outputs, whatever backend the calling shell chose (Agg shows none)
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
    })
    for name in ("XR0LAB_DATA",):  # a caller's choice of committed results still applies
        if name in os.environ:
            env[name] = os.environ[name]
    return root, env


@pytest.fixture(scope="module")
def jupyterlab(chromium_path) -> Lab:
    base = Path(tempfile.mkdtemp(prefix="xr0lab-browser-"))
    root, env = _prepare(base)
    token = secrets.token_hex(24)
    env["JUPYTER_TOKEN"] = token  # in the environment, not on the command line (ps shows that)
    port = _free_port()
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser",
           "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
           f"--ServerApp.root_dir={root}", "--ServerApp.allow_remote_access=False",
           "--ServerApp.terminals_enabled=False", "--LabApp.expose_app_in_browser=True",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    log = base / "server.log"
    lab = Lab(f"http://127.0.0.1:{port}", token, root, log)
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_until_up(lab, proc)
        yield lab
    finally:
        _stop(proc)
        shutil.rmtree(base, ignore_errors=True)


def _wait_until_up(lab: Lab, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    request = urllib.request.Request(f"{lab.url}/api/status",
                                     headers={"Authorization": f"token {lab.token}"})
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"JupyterLab exited with {proc.returncode} before serving:\n"
                        f"{lab.log_tail()}", pytrace=False)
        try:
            with urllib.request.urlopen(request, timeout=5) as reply:
                if reply.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    pytest.fail(f"JupyterLab did not answer on {lab.url} within {SERVER_START_TIMEOUT_S} s:\n"
                f"{lab.log_tail()}", pytrace=False)


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM lets the server shut its kernels down; whatever is left of the process group it
    started (kernels included) is killed after SERVER_STOP_TIMEOUT_S."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(SERVER_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the session start_new_session gave it
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


@pytest.fixture(scope="module")
def browser(chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        # /dev/shm is small in containers; Chromium falls back to /tmp with this flag.
        chromium = pw.chromium.launch(executable_path=chromium_path, headless=True,
                                      args=["--disable-dev-shm-usage"])
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def local_page(browser, jupyterlab):
    """A factory of pages, each in a fresh browser context that can reach the test's JupyterLab
    and nothing else (requests elsewhere are aborted and listed in `page.blocked_requests`)."""
    contexts = []

    def new_page():
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        contexts.append(context)
        blocked: list[str] = []

        def only_local(route):
            if route.request.url.startswith(jupyterlab.url + "/"):
                route.continue_()
            else:
                blocked.append(route.request.url)
                route.abort()

        context.route("**/*", only_local)
        page = context.new_page()
        page.blocked_requests = blocked
        return page

    try:
        yield new_page
    finally:
        for context in contexts:
            context.close()
