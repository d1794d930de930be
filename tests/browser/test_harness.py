"""The browser harness works here: JupyterLab starts, a notebook runs, and a click in an
anywidget makes the round trip browser -> kernel -> browser."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from playwright.sync_api import expect

if TYPE_CHECKING:
    from .conftest import Lab

pytestmark = pytest.mark.browser

# Cells of fixtures/ping_widget.ipynb (0 is markdown).
WIDGET_CELL, COUNT_CELL, HTML_CELL = 1, 2, 3


def test_click_in_anywidget_reaches_kernel_and_back(lab: Lab) -> None:
    lab.open(lab.server.add_notebook("ping_widget.ipynb"))
    lab.run_all()

    widget = lab.output(WIDGET_CELL)
    log = widget.get_by_role("log", name="Ping log")
    expect(log).to_have_text("pings: 0; kernel: none")
    expect(lab.output(COUNT_CELL)).to_have_text("python count = 0")

    widget.get_by_role("button", name="Ping").click()
    # "pong 1" is set by a traitlets observer in the kernel: only a round trip shows it.
    expect(log).to_have_text("pings: 1; kernel: pong 1")

    lab.run_cell(COUNT_CELL)
    expect(lab.output(COUNT_CELL)).to_have_text("python count = 1")

    shot = lab.screenshot(widget, "harness-ping-widget.png")
    assert shot.stat().st_size > 0


def test_printed_markup_is_shown_as_text(lab: Lab) -> None:
    lab.open(lab.server.add_notebook("ping_widget.ipynb"))
    lab.run_all()

    output = lab.output(HTML_CELL)
    expect(output).to_have_text("<b>x</b>")
    expect(output.locator("b")).to_have_count(0)


def test_run_all_reports_a_raising_cell(lab: Lab) -> None:
    lab.open(lab.server.add_notebook("raises.ipynb"))
    with pytest.raises(AssertionError, match="boom from fixture"):
        lab.run_all()
    expect(lab.output(0)).to_have_text("before")
    expect(lab.output(2)).to_have_text("")  # run-all stops at the error


def test_set_theme_and_reset_between_tests(lab: Lab) -> None:
    lab.open(lab.server.add_notebook("ping_widget.ipynb"))
    # fetchNews=false in the settings defaults: no "get notified about news?" toast.
    expect(lab.page.locator(".Toastify__toast")).to_have_count(0)
    body = lab.page.locator("body")
    lab.set_theme("dark")
    expect(body).to_have_attribute("data-jp-theme-name", "JupyterLab Dark")
    expect(body).to_have_attribute("data-jp-theme-light", "false")

    # What the lab_page teardown does, so the next test starts in the light theme again.
    themes = "/lab/api/settings/@jupyterlab/apputils-extension:themes"
    assert lab.server.api("GET", themes)["settings"]["theme"] == "JupyterLab Dark"
    lab.server.reset_user_state()
    assert "theme" not in lab.server.api("GET", themes)["settings"]
