"""Helpers for ``tests/test_durable_*.py``: the npm folder, server processes, vitest runs.

``tests/durable/`` pins the Durable Streams npm packages (conformance suite,
reference server, TypeScript client) in a committed ``package.json`` and
``package-lock.json``; :func:`npm_folder` installs them with ``npm ci`` on
first use (``scripts/test.sh`` and ``.ci/run`` do it up front).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest

DURABLE_JS = Path(__file__).parent / "durable"
#: how long one run of the conformance suite may take, seconds
SUITE_TIMEOUT_S = 600
#: the long-poll timeout both servers get for the suite, seconds (short: the suite waits it out)
SUITE_LONG_POLL_TIMEOUT_S = 2.0
_STARTUP_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 40.0  # a graceful stop settles every stream (--workers: all workers)


def npm_folder() -> Path:
    """``tests/durable`` with its ``node_modules`` installed; skips without node/npm."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed for the Durable Streams npm packages")
    if not (DURABLE_JS / "node_modules" / "@durable-streams").is_dir():
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=DURABLE_JS,
            check=True,
            timeout=600,
        )
    return DURABLE_JS


def pinned_versions() -> dict[str, str]:
    """The npm packages and versions ``tests/durable/package.json`` pins."""
    deps: dict[str, str] = json.loads((DURABLE_JS / "package.json").read_text())["dependencies"]
    return deps


@dataclass
class Served:
    """A server process: its base URL (no trailing slash) and its output so far."""

    url: str
    _log: IO[str]
    #: the process (to signal it: SIGKILL in the multi-worker tests)
    proc: subprocess.Popen[str]

    def output(self) -> str:
        self._log.seek(0)
        return self._log.read()


@contextlib.contextmanager
def _process(args: list[str], pattern: str, cwd: Path | None = None) -> Iterator[Served]:
    """Run ``args`` until the block ends; yields it once its output matches ``pattern``.

    The output goes to a temporary file (a pipe nobody drains could fill and stall the
    server); on failure to start, the assertion shows it.
    """
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(
            args,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            deadline = time.monotonic() + _STARTUP_TIMEOUT_S
            while True:
                log.seek(0)
                output = log.read()
                if m := re.search(pattern, output):
                    break
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"{args[:4]} did not start: {output!r}")
                time.sleep(0.1)
            yield Served(m.group(1), log, proc)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=_STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


@contextlib.contextmanager
def streamnb_serve(*args: str) -> Iterator[Served]:
    """``streamnb serve --port 0 ARGS`` in a subprocess."""
    with _process(
        [sys.executable, "-m", "streamnb.cli", "serve", "--port", "0", "--log-level",
         "warning", *args],
        r"serving .* on (http://127\.0\.0\.1:\d+)/",
    ) as served:  # fmt: skip
        yield served


@contextlib.contextmanager
def reference_server(long_poll_timeout_s: float = SUITE_LONG_POLL_TIMEOUT_S) -> Iterator[Served]:
    """The pinned ``@durable-streams/server`` (``tests/durable/reference_server.mjs``)."""
    folder = npm_folder()
    with _process(
        ["node", "reference_server.mjs", "--port", "0", "--long-poll-timeout-ms",
         str(int(long_poll_timeout_s * 1000))],
        r"listening (http://127\.0\.0\.1:\d+)",
        cwd=folder,
    ) as served:  # fmt: skip
        yield served


def run_conformance(
    base_url: str, out: Path, long_poll_timeout_s: float = SUITE_LONG_POLL_TIMEOUT_S
) -> dict[str, str]:
    """Run the pinned conformance suite against ``base_url`` with vitest.

    Returns
    -------
    dict
        ``"group > ... > test name"`` -> ``"passed"``, ``"failed"`` or ``"skipped"``.
        Failure messages are in ``out`` (vitest's JSON report).
    """
    folder = npm_folder()
    env = {
        **os.environ,
        "DURABLE_STREAMS_URL": base_url,
        "DURABLE_STREAMS_LONG_POLL_TIMEOUT_MS": str(int(long_poll_timeout_s * 1000)),
    }
    subprocess.run(
        ["npx", "--no-install", "vitest", "run", "--reporter=json", f"--outputFile={out}"],
        cwd=folder,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=SUITE_TIMEOUT_S,
        check=False,  # vitest exits 1 when a test fails; the report says which
    )
    report: dict[str, Any] = json.loads(out.read_text())
    results: dict[str, str] = {}
    for file in report["testResults"]:
        for test in file["assertionResults"]:
            name = " > ".join([*test["ancestorTitles"], test["title"]])
            status = test["status"]
            results[name] = "skipped" if status in ("pending", "skipped", "todo") else status
    return results


def failure_messages(out: Path) -> dict[str, str]:
    """Test name -> first line of its failure message, from a vitest JSON report."""
    report = json.loads(out.read_text())
    messages = {}
    for file in report["testResults"]:
        for t in file["assertionResults"]:
            if t["status"] == "failed":
                lines = (t["failureMessages"] or [""])[0].strip().splitlines()
                messages[" > ".join([*t["ancestorTitles"], t["title"]])] = (lines or [""])[0]
    return messages
