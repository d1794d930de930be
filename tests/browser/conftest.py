"""Browser harness: a throwaway JupyterLab driven by Debian's chromium through Playwright.

Fixtures
--------
``jupyter_server`` (session)
    A ``jupyter lab`` on 127.0.0.1 with no token, its own config/data/runtime/IPython
    directories, news and update checks off, and ``window.jupyterapp`` exposed so the
    helpers below can call JupyterLab commands instead of clicking through menus.
``lab_page`` (function)
    A Playwright page in a fresh browser context. On teardown every kernel is shut down
    and the user settings and workspaces are wiped, so tests do not leak state (theme,
    open tabs) into each other. A failed test leaves a screenshot and the server log
    tail in ``test-artifacts/``.
``lab`` (function)
    ``Lab(page, server)``: the helpers bound to one page, for tests that prefer
    ``lab.open("x.ipynb"); lab.run_all()`` over passing page and server around.
``notebook7_server`` (session), ``notebook7`` (function)
    The same for Jupyter Notebook 7 (the ``notebook`` package): ``notebook7.open(name)``
    opens ``/notebooks/<name>``; the other helpers work unchanged (Notebook 7 is built
    from JupyterLab's components and exposes ``window.jupyterapp`` the same way).
``nb`` (function, parametrized)
    ``lab``, then ``notebook7``: a test taking ``nb`` runs in both front ends.

A widget test in a few lines::

    pytestmark = pytest.mark.browser

    def test_stop(lab):
        lab.server.add_notebook(FIXTURES / "chat.ipynb")
        lab.open("chat.ipynb")
        lab.run_all()
        lab.page.get_by_role("button", name="Stop").click()
        expect(lab.page.get_by_role("log")).to_contain_text("cancelled")

The harness imports neither ``streamnb`` nor any Jupyter package: the server runs in a
subprocess, and the kernel finds the checkout through ``PYTHONPATH``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import pytest
from playwright.sync_api import Browser, Locator, Page, Playwright, sync_playwright
from playwright.sync_api import Error as PlaywrightError

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
FIXTURES = Path(__file__).parent / "fixtures"
THEMES = {"light": "JupyterLab Light", "dark": "JupyterLab Dark"}

SERVER_START_TIMEOUT_S = 60.0
SERVER_STOP_TIMEOUT_S = 15.0

# Defaults for JupyterLab settings, read from <JUPYTER_CONFIG_DIR>/labconfig. They keep
# the UI free of popups that would cover the notebook in a test.
LAB_SETTING_DEFAULTS: dict[str, dict[str, Any]] = {
    # "Would you like to receive official Jupyter news?" toast, and the update check.
    "@jupyterlab/apputils-extension:notification": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
    "@jupyterlab/notebook-extension:tracker": {
        # Start the notebook's kernel without a "Select Kernel" dialog.
        "autoStartDefaultKernel": True,
        # Keep every cell in the DOM so locators can reach cells below the fold.
        "windowingMode": "none",
    },
    "@jupyterlab/apputils-extension:sessionDialogs": {"skipKernelRestartDialog": True},
}


# --------------------------------------------------------------------------- server


@dataclass
class JupyterServer:
    """A running ``jupyter lab`` subprocess; see the ``jupyter_server`` fixture."""

    url: str
    root_dir: Path
    config_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes] = field(repr=False)
    #: "lab" (JupyterLab) or "notebook" (Jupyter Notebook 7)
    app: Literal["lab", "notebook"] = "lab"
    _descendants: dict[int, str] = field(default_factory=dict, repr=False)

    def add_notebook(self, source: str | os.PathLike[str], name: str | None = None) -> str:
        """Copy a notebook (default: from ``tests/browser/fixtures``) into the root dir.

        Returns the path relative to the root dir, as ``open_notebook`` expects it.
        """
        src = Path(source)
        if not src.is_absolute() and not src.exists():
            src = FIXTURES / src
        target = self.root_dir / (name or src.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
        return target.relative_to(self.root_dir).as_posix()

    def api(self, method: str, path: str, timeout_s: float = 10.0) -> Any:
        """Call the Jupyter REST API; returns the decoded JSON body or None."""
        request = urllib.request.Request(f"{self.url}{path}", method=method)
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            body = response.read()
        return json.loads(body) if body else None

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def shutdown_kernels(self) -> None:
        """Shut down every kernel (and its session), waiting for each to exit."""
        self._remember_descendants()
        for kernel in self.api("GET", "/api/kernels"):
            self._delete(f"/api/kernels/{kernel['id']}")
        for session in self.api("GET", "/api/sessions"):
            self._delete(f"/api/sessions/{session['id']}")

    def _delete(self, path: str) -> None:
        try:
            self.api("DELETE", path, timeout_s=20.0)  # a kernel gets time to exit cleanly
        except urllib.error.HTTPError as exc:
            if exc.code != 404:  # 404: already gone
                raise

    def reset_user_state(self) -> None:
        """Forget settings changed through the UI (theme, ...) and saved workspaces."""
        lab_dir = self.config_dir / "lab"
        for name in ("user-settings", "workspaces"):
            shutil.rmtree(lab_dir / name, ignore_errors=True)

    def stop(self) -> None:
        """Stop the server and every process it started, whatever state it is in."""
        try:
            if self.process.poll() is None:
                try:
                    self.shutdown_kernels()
                    # Shuts down remaining kernels and terminals, then stops the loop.
                    self.api("POST", "/api/shutdown", timeout_s=SERVER_STOP_TIMEOUT_S)
                except (OSError, ValueError):
                    pass
                _wait_or_kill(self.process, SERVER_STOP_TIMEOUT_S)
        finally:
            _kill_group(self.process)
            # Kernels run in their own sessions, so the group kill above misses them.
            for pid, start_time in self._descendants.items():
                if _start_time(pid) == start_time:
                    _kill(pid)

    def _remember_descendants(self) -> None:
        for pid in _descendants(self.process.pid):
            start_time = _start_time(pid)
            if start_time is not None:
                self._descendants[pid] = start_time


def _wait_or_kill(process: subprocess.Popen[bytes], timeout_s: float) -> None:
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _signal_group(process, signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            process.wait(timeout=5)


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    _signal_group(process, signal.SIGKILL)
    if process.poll() is None:
        process.wait(timeout=5)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces; fields after it are fixed.
    return raw[raw.rfind(")") + 2 :].split()


def _start_time(pid: int) -> str | None:
    fields = _stat(pid)
    return fields[19] if fields else None


def _descendants(root: int) -> list[int]:
    """PIDs of all live descendants of ``root`` (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))):
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: list[int] = []
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def _server_env(home: Path, repo_root: Path) -> dict[str, str]:
    env = dict(os.environ)
    for key in ("JUPYTER_CONFIG_PATH", "JUPYTER_PATH", "JUPYTER_TOKEN", "JUPYTERHUB_API_TOKEN"):
        env.pop(key, None)
    env.update(
        JUPYTER_CONFIG_DIR=str(home / "config"),
        JUPYTER_DATA_DIR=str(home / "data"),
        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
        IPYTHONDIR=str(home / "ipython"),
        JUPYTER_PLATFORM_DIRS="1",
        # Notebooks import the checkout even when it is not installed.
        PYTHONPATH=os.pathsep.join(filter(None, [str(repo_root), env.get("PYTHONPATH")])),
        PYTHONUNBUFFERED="1",
    )
    return env


def _read_port(runtime_dir: Path, pid: int) -> int | None:
    info = runtime_dir / f"jpserver-{pid}.json"
    try:
        return int(json.loads(info.read_text())["port"])
    except (OSError, ValueError, KeyError):
        return None


# The module each app runs as, and its class (for the expose_app_in_browser option).
APPS = {"lab": ("jupyterlab", "LabApp"), "notebook": ("notebook", "JupyterNotebookApp")}


def start_jupyter_server(
    home: Path, repo_root: Path, app: Literal["lab", "notebook"] = "lab"
) -> JupyterServer:
    """Start ``jupyter lab`` (or Notebook 7) with all state under ``home``; wait for /api/status."""
    root_dir = home / "root"
    config_dir = home / "config"
    for d in (
        root_dir,
        config_dir / "labconfig",
        home / "data",
        home / "runtime",
        home / "ipython",
    ):
        d.mkdir(parents=True, exist_ok=True)
    (config_dir / "labconfig" / "default_setting_overrides.json").write_text(
        json.dumps(LAB_SETTING_DEFAULTS, indent=2)
    )
    # Server extensions the tests never use only slow the start down.
    (config_dir / "jupyter_server_config.json").write_text(
        json.dumps(
            {
                "ServerApp": {
                    "jpserver_extensions": {"jupyter_lsp": False, "jupyter_server_terminals": False}
                }
            },
            indent=2,
        )
    )
    log_path = home / "server.log"
    module, app_class = APPS[app]
    command = [
        sys.executable,
        "-m",
        module,
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        "--ServerApp.port=0",  # the OS picks a free port; read back from the runtime file
        "--ServerApp.port_retries=0",
        "--IdentityProvider.token=",
        "--PasswordIdentityProvider.hashed_password=",
        "--ServerApp.disable_check_xsrf=True",
        f"--ServerApp.root_dir={root_dir}",
        "--ServerApp.allow_root=True",  # CI containers run as root
        f"--{app_class}.expose_app_in_browser=True",
    ]
    if app == "lab":
        command += [
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=root_dir,
            env=_server_env(home, repo_root),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, killed as one at teardown
        )
    server = JupyterServer("", root_dir, config_dir, log_path, process, app)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"jupyter lab exited with {process.returncode}:\n{server.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"jupyter lab did not answer /api/status within {SERVER_START_TIMEOUT_S} s:"
                    f"\n{server.log_tail()}"
                )
            port = _read_port(home / "runtime", process.pid)
            if port is not None:
                server.url = f"http://127.0.0.1:{port}"
                try:
                    server.api("GET", "/api/status", timeout_s=2.0)
                    return server
                except (OSError, ValueError):
                    pass
            time.sleep(0.1)  # polling a subprocess: there is no event to wait on
    except BaseException:
        server.stop()
        raise


@pytest.fixture(scope="session")
def jupyter_server(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Iterator[JupyterServer]:
    server = start_jupyter_server(tmp_path_factory.mktemp("jupyter"), pytestconfig.rootpath)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def notebook7_server(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Iterator[JupyterServer]:
    server = start_jupyter_server(
        tmp_path_factory.mktemp("notebook7"), pytestconfig.rootpath, app="notebook"
    )
    try:
        yield server
    finally:
        server.stop()


# --------------------------------------------------------------------------- browser


# Module scope, not session: while Playwright's sync API is started, its event loop counts
# as running in the main thread, so pytest-asyncio tests in later modules (the server's
# browser tests) could not start theirs.
@pytest.fixture(scope="module")
def playwright_instance() -> Iterator[Playwright]:
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="module")
def chromium_browser(playwright_instance: Playwright) -> Iterator[Browser]:
    browser = playwright_instance.chromium.launch(
        executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
    )
    try:
        yield browser
    finally:
        browser.close()


_CALL_REPORT = pytest.StashKey[pytest.TestReport]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report: pytest.TestReport = yield
    if report.when == "call":
        item.stash[_CALL_REPORT] = report
    return report


def artifacts_dir(config: pytest.Config) -> Path:
    path = config.rootpath / "test-artifacts"
    path.mkdir(exist_ok=True)
    return path


def _page_for(
    browser: Browser, server: JupyterServer, request: pytest.FixtureRequest
) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(30_000)
    page = context.new_page()
    try:
        yield page
    finally:
        try:
            report = request.node.stash.get(_CALL_REPORT, None)
            if report is not None and report.failed:
                stem = "".join(c if c.isalnum() else "_" for c in request.node.name)
                out = artifacts_dir(request.config)
                page.screenshot(path=out / f"{stem}.failed.png", full_page=True)
                (out / f"{stem}.server.log").write_text(server.log_tail(200))
        finally:
            context.close()
            server.shutdown_kernels()
            server.reset_user_state()


@pytest.fixture
def lab_page(
    chromium_browser: Browser, jupyter_server: JupyterServer, request: pytest.FixtureRequest
) -> Iterator[Page]:
    yield from _page_for(chromium_browser, jupyter_server, request)


@pytest.fixture
def notebook7_page(
    chromium_browser: Browser, notebook7_server: JupyterServer, request: pytest.FixtureRequest
) -> Iterator[Page]:
    yield from _page_for(chromium_browser, notebook7_server, request)


# --------------------------------------------------------------------------- helpers

# JavaScript run in the page: finds the notebook panel open on ``path`` (or the current
# one when ``path`` is null). Needs ``window.jupyterapp`` (LabApp.expose_app_in_browser).
_FIND_PANEL = """
(path) => {
  const app = window.jupyterapp;
  if (!app) return null;
  const isNotebook = (w) => w && w.content && w.sessionContext && w.context;
  if (path === null) {
    const w = app.shell.currentWidget;
    return isNotebook(w) ? w : null;
  }
  for (const w of app.shell.widgets("main")) {
    if (isNotebook(w) && w.context.path === path) return w;
  }
  return null;
}
"""


def _js(body: str) -> str:
    """A page function of one argument ``arg`` with ``findPanel`` in scope."""
    return f"(arg) => {{ const findPanel = {_FIND_PANEL}; {body} }}"


def open_notebook(page: Page, server: JupyterServer, name: str, timeout_s: float = 60.0) -> None:
    """Open ``name`` (relative to the server root) in a fresh workspace; wait for an idle kernel.

    On Notebook 7 the notebook gets its own page (``/notebooks/<name>``).
    """
    if server.app == "notebook":
        page.goto(f"{server.url}/notebooks/{quote(name)}")
    else:
        # A workspace of its own: nothing restored from an earlier test, no layout to undo.
        workspace = f"t{time.monotonic_ns()}"
        page.goto(f"{server.url}/lab/workspaces/{workspace}/tree/{quote(name)}")
    page.wait_for_function("() => window.jupyterapp !== undefined", timeout=timeout_s * 1000)
    page.evaluate("async () => { await window.jupyterapp.restored; }")
    page.wait_for_function(
        _js("const p = findPanel(arg); return p !== null && p.context.isReady;"),
        arg=name,
        timeout=timeout_s * 1000,
        polling=100,
    )
    page.evaluate(
        _js(
            "const p = findPanel(arg); window.jupyterapp.shell.activateById(p.id);"
            " return p.sessionContext.ready;"
        ),
        name,
    )
    dismiss_dialogs(page)
    wait_kernel_idle(page, timeout_s)


def dismiss_dialogs(page: Page) -> int:
    """Close JupyterLab dialogs and toasts that would block clicks; returns how many.

    A kernel-selection dialog is accepted (starts the preferred kernel); any other dialog
    is rejected, so nothing destructive is confirmed by accident.
    """
    closed = 0
    dialogs = page.locator(".jp-Dialog")
    while dialogs.count() > 0:
        dialog = dialogs.first
        header = dialog.locator(".jp-Dialog-header").inner_text()
        if "kernel" in header.lower() and "select" in header.lower():
            dialog.locator(".jp-Dialog-button.jp-mod-accept").click()
        else:
            dialog.locator(".jp-Dialog-button.jp-mod-reject").first.click()
        dialog.wait_for(state="detached")
        closed += 1
    # The close (x) button only: a toast's own buttons would act on it (e.g. opt in to news).
    toasts = page.locator(".jp-Notification-Toast-Close")
    while toasts.count() > 0:
        try:
            toasts.first.click(timeout=2_000)
        except PlaywrightError:  # closed itself in the meantime
            continue
        closed += 1
    return closed


def wait_kernel_idle(page: Page, timeout_s: float = 60.0) -> None:
    """Wait until the current notebook's kernel is idle and no cell is queued or running."""
    page.wait_for_function(
        _js(
            """
            const p = findPanel(null);
            if (p === null) return false;
            const kernel = p.sessionContext.session && p.sessionContext.session.kernel;
            if (!kernel || kernel.status !== "idle") return false;
            return !p.content.widgets.some(
              (c) => c.model.type === "code" && c.model.executionState === "running"
            );
            """
        ),
        arg=None,
        timeout=timeout_s * 1000,
        polling=100,
    )


def execute_command(page: Page, command: str, args: dict[str, Any] | None = None) -> Any:
    """Run a JupyterLab command (``notebook:run-all-cells``, ...) and await its result."""
    return page.evaluate(
        "async ([id, args]) => {"
        "  const r = await window.jupyterapp.commands.execute(id, args);"
        "  return (r === undefined || typeof r === 'object') ? null : r; }",
        [command, args or {}],
    )


def run_all_cells(page: Page, timeout_s: float = 60.0, *, check: bool = True) -> None:
    """Run every cell of the current notebook and wait for the kernel to go idle.

    With ``check`` (default) an error in any cell fails with the cells' error outputs.
    """
    ok = page.evaluate(
        _js(
            """
            const p = findPanel(null);
            window.jupyterapp.shell.activateById(p.id);
            return window.jupyterapp.commands.execute("notebook:run-all-cells");
            """
        ),
        None,
    )
    wait_kernel_idle(page, timeout_s)
    if check and ok is False:
        raise AssertionError("a cell raised:\n" + "\n".join(cell_errors(page)))


def cell_errors(page: Page) -> list[str]:
    """``"cell <i>: <ename>: <evalue>"`` for each error output in the current notebook."""
    errors: list[str] = page.evaluate(
        _js(
            """
            const p = findPanel(null);
            const found = [];
            p.content.widgets.forEach((c, i) => {
              if (c.model.type !== "code") return;
              const outputs = c.model.outputs;
              for (let k = 0; k < outputs.length; k++) {
                const o = outputs.get(k).toJSON();
                if (o.output_type === "error") found.push(`cell ${i}: ${o.ename}: ${o.evalue}`);
              }
            });
            return found;
            """
        ),
        None,
    )
    return errors


def run_cell(page: Page, index: int, timeout_s: float = 60.0) -> None:
    """Run the cell at ``index`` (0-based, markdown cells count) and wait until idle."""
    page.evaluate(
        _js(
            """
            const p = findPanel(null);
            window.jupyterapp.shell.activateById(p.id);
            p.content.activeCellIndex = arg;
            return window.jupyterapp.commands.execute("notebook:run-cell");
            """
        ),
        index,
    )
    wait_kernel_idle(page, timeout_s)


def cell(page: Page, index: int) -> Locator:
    """The cell at ``index`` of the current notebook."""
    return page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell").nth(index)


def cell_output(page: Page, index: int) -> Locator:
    """The output area of the cell at ``index``."""
    return cell(page, index).locator(".jp-OutputArea")


def set_theme(page: Page, theme: Literal["light", "dark"] | str) -> None:
    """Switch JupyterLab's theme ("light", "dark" or a full theme name) and wait for it."""
    name = THEMES.get(theme, theme)
    page.evaluate(
        "async (theme) => {"
        "  await window.jupyterapp.commands.execute('apputils:change-theme', {theme}); }",
        name,
    )
    page.wait_for_function(
        "(theme) => document.body.dataset.jpThemeName === theme", arg=name, polling=100
    )


def screenshot(page: Page, locator: Locator, path: str | os.PathLike[str]) -> Path:
    """Save a PNG of ``locator`` (creating parent dirs) and return its path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    locator.scroll_into_view_if_needed()
    locator.screenshot(path=target, animations="disabled")
    return target


@dataclass
class Lab:
    """The helpers bound to one page and server (the ``lab`` fixture)."""

    page: Page
    server: JupyterServer
    artifacts: Path

    def open(self, name: str, timeout_s: float = 60.0) -> None:
        open_notebook(self.page, self.server, name, timeout_s)

    def run_all(self, timeout_s: float = 60.0, *, check: bool = True) -> None:
        run_all_cells(self.page, timeout_s, check=check)

    def run_cell(self, index: int, timeout_s: float = 60.0) -> None:
        run_cell(self.page, index, timeout_s)

    def cell(self, index: int) -> Locator:
        return cell(self.page, index)

    def output(self, index: int) -> Locator:
        return cell_output(self.page, index)

    def wait_idle(self, timeout_s: float = 60.0) -> None:
        wait_kernel_idle(self.page, timeout_s)

    def set_theme(self, theme: Literal["light", "dark"] | str) -> None:
        set_theme(self.page, theme)

    def command(self, command: str, args: dict[str, Any] | None = None) -> Any:
        return execute_command(self.page, command, args)

    def dismiss_dialogs(self) -> int:
        return dismiss_dialogs(self.page)

    def screenshot(self, locator: Locator, name: str) -> Path:
        return screenshot(self.page, locator, self.artifacts / name)


@pytest.fixture
def lab(lab_page: Page, jupyter_server: JupyterServer, request: pytest.FixtureRequest) -> Lab:
    return Lab(lab_page, jupyter_server, artifacts_dir(request.config))


@pytest.fixture
def notebook7(
    notebook7_page: Page, notebook7_server: JupyterServer, request: pytest.FixtureRequest
) -> Lab:
    """The ``lab`` helpers on Jupyter Notebook 7."""
    return Lab(notebook7_page, notebook7_server, artifacts_dir(request.config))


@pytest.fixture(params=["lab", "notebook7"])
def nb(request: pytest.FixtureRequest) -> Lab:
    """The ``lab`` helpers, once in JupyterLab and once in Jupyter Notebook 7 (a test taking
    ``nb`` runs in both)."""
    lab: Lab = request.getfixturevalue(request.param)
    return lab
