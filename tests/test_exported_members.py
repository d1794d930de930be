"""The public surface: __all__ is exactly the documented names (httpx/anyio practice)."""

from __future__ import annotations

import subprocess
import sys

import streamnb

DOCUMENTED = {
    # design.md public API
    "AttachedStreamHandler",
    "StreamRuntime",
    "Ledger",
    "Frame",
    "ParseOk",
    "ParseError",
    "parse_ok",
    "read_until_terminal",
    "project_attached_stream",
    "progress",
    "output",
    "completed",
    "cancelled",
    "failed",
    "StreamWidget",
    "ChatWidget",
    # objects the API hands out
    "Session",
    "StreamContext",
    "AbortSignal",
    "LedgerTx",
    "StreamProjection",
    "StreamInfo",
    "project_streams",
    "testing",
    # submodules for distinct audiences, loaded on first use
    "providers",
    "server",
    # streamnb.rooms (seed 004's multi-room chat)
    "rooms",
    "ChatRooms",
    "ChatRoomsWidget",
    # errors (streamnb/_errors.py tree)
    "StreamnbError",
    "HandlerDefinitionError",
    "UnknownKindError",
    "StartRejectedError",
    "UnknownStreamError",
    "InputNotAcceptedError",
    "StreamSettledError",
    "InvalidFrameError",
    "RuntimeClosedError",
    "StreamTimeoutError",
    "LedgerError",
    "LedgerBusyError",
    "LedgerQueryError",
}


def test_all_is_sorted_and_documented():
    assert streamnb.__all__ == sorted(streamnb.__all__)
    assert set(streamnb.__all__) == DOCUMENTED


def test_every_public_name_resolves_and_has_a_docstring():
    for name in streamnb.__all__:
        obj = getattr(streamnb, name)
        assert obj.__doc__, name


def test_core_imports_no_jupyter_package():
    code = (
        "import sys, streamnb, streamnb._runtime, streamnb._ledger, streamnb._projection, "
        "streamnb._tool_frames; "
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('IPython', 'ipykernel', 'ipywidgets', 'anywidget', 'jupyterlab', 'starlette', "
        "'openai')]; "
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr
