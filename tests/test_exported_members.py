"""The public surface is exactly ``__all__`` (httpx ``tests/test_exported_members.py``).

``vars(streamnb)`` holds nothing public that ``__all__`` does not list: no typing
helpers, no ``annotations``, no internal modules. Checked in a fresh interpreter
(this test process has imported much more), right after ``import streamnb`` and
again after every lazily loaded name was used; ``dir(streamnb)`` (tab completion)
is ``sorted(__all__)`` both times.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

import streamnb

DOCUMENTED = {
    # the public API (README.md, the tutorials)
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
    "FrameCursor",
    "FrameBatch",
    "project_streams",
    # streamnb.rooms (seed 004's multi-room chat)
    "ChatRooms",
    "ChatRoomsWidget",
    # public subpackages, one per audience, loaded on first use (streamnb/__init__.py)
    "demo",
    "providers",
    "rooms",
    "server",
    "testing",
    "widget",
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
    "SessionDetachedError",
    "OutputConsumedError",
    "WaitInterruptedError",
    "StreamTimeoutError",
    "LedgerError",
    "LedgerBusyError",
    "LedgerQueryError",
    "LedgerTimeoutError",
    "LedgerUnavailableError",
    "__version__",
}
#: dunder names that are part of the surface (as httpx lists __version__)
INCLUDED_PRIVATE_MEMBERS = {"__version__"}


def _namespace(load_lazy: bool) -> dict[str, Any]:
    """In a fresh interpreter: the public names of vars(streamnb), dir(streamnb), __all__."""
    code = f"""
import json, streamnb
if {load_lazy!r}:
    for name in sorted(streamnb._LAZY):
        getattr(streamnb, name)
included = {sorted(INCLUDED_PRIVATE_MEMBERS)!r}
public = [m for m in vars(streamnb) if not m.startswith("_") or m in included]
print(json.dumps({{"vars": sorted(public), "dir": dir(streamnb), "all": streamnb.__all__,
                  "lazy": sorted(streamnb._LAZY)}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def test_all_is_sorted_and_documented() -> None:
    assert streamnb.__all__ == sorted(streamnb.__all__)
    assert set(streamnb.__all__) == DOCUMENTED


def test_fresh_import_namespace_is_all_but_the_lazy_names() -> None:
    ns = _namespace(load_lazy=False)
    assert ns["vars"] == sorted(set(ns["all"]) - set(ns["lazy"]))
    assert ns["dir"] == sorted(ns["all"])


def test_namespace_after_loading_every_lazy_name_is_exactly_all() -> None:
    ns = _namespace(load_lazy=True)
    assert ns["vars"] == sorted(ns["all"])
    assert ns["dir"] == sorted(ns["all"])


def test_every_lazy_name_is_public() -> None:
    assert set(streamnb._LAZY) <= set(streamnb.__all__)


def test_every_public_name_resolves_and_has_a_docstring() -> None:
    for name in streamnb.__all__:
        obj = getattr(streamnb, name)
        if name != "__version__":
            assert obj.__doc__, name


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        streamnb.no_such_name  # type: ignore[attr-defined]  # noqa: B018


def test_ledger_shows_users_no_runtime_only_methods() -> None:
    with streamnb.Ledger() as ledger:
        public = {n for n in dir(ledger) if not n.startswith("_")}
    assert not {"open_stream", "record_frame", "settle", "check_writable"} & public
    assert {"events", "streams", "frames", "frame_log", "sql", "close"} <= public
