"""streamnb: attached streams native to Jupyter.

A *handler* defines a stream kind; the :class:`StreamRuntime` runs *streams* of
it, each observed by *sessions* that read *frames*, send input, cancel and
detach; every stream ends in exactly one *settlement* committed to the
:class:`Ledger`; :func:`project_attached_stream` folds frames into pandas
DataFrames. The core (this namespace minus the widgets) imports nothing from
Jupyter: ``StreamWidget`` and ``ChatWidget`` load their modules on first use.

See ``design.md`` for the vocabulary and the guarantees.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import testing
from ._errors import (
    HandlerDefinitionError,
    InputNotAcceptedError,
    InvalidFrameError,
    LedgerBusyError,
    LedgerError,
    LedgerQueryError,
    RuntimeClosedError,
    StartRejectedError,
    StreamnbError,
    StreamSettledError,
    StreamTimeoutError,
    UnknownKindError,
    UnknownStreamError,
)
from ._frames import Frame, cancelled, completed, failed, output, progress
from ._handler import (
    AbortSignal,
    AttachedStreamHandler,
    ParseError,
    ParseOk,
    StreamContext,
    parse_ok,
)
from ._ledger import Ledger, LedgerTx
from ._projection import StreamProjection, project_attached_stream, project_streams
from ._runtime import Session, StreamInfo, StreamRuntime, read_until_terminal

if TYPE_CHECKING:
    from . import providers, rooms, server
    from .rooms import ChatRooms
    from .widget import ChatRoomsWidget, ChatWidget, StreamWidget

__version__ = "0.1.0"

_LAZY = {
    "StreamWidget": ("streamnb.widget", "StreamWidget"),
    "ChatWidget": ("streamnb.widget", "ChatWidget"),
    "ChatRooms": ("streamnb.rooms", "ChatRooms"),
    "ChatRoomsWidget": ("streamnb.widget", "ChatRoomsWidget"),
    "rooms": ("streamnb.rooms", None),
    "providers": ("streamnb.providers", None),
    "server": ("streamnb.server", None),
}


def __getattr__(name: str) -> Any:
    """Load the widgets (Jupyter), ``server`` and ``providers`` on first use."""
    if name in _LAZY:
        import importlib

        module_name, attr = _LAZY[name]
        module = importlib.import_module(module_name)
        value = module if attr is None else getattr(module, attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'streamnb' has no attribute {name!r}")


__all__ = [
    "AbortSignal",
    "AttachedStreamHandler",
    "ChatRooms",
    "ChatRoomsWidget",
    "ChatWidget",
    "Frame",
    "HandlerDefinitionError",
    "InputNotAcceptedError",
    "InvalidFrameError",
    "Ledger",
    "LedgerBusyError",
    "LedgerError",
    "LedgerQueryError",
    "LedgerTx",
    "ParseError",
    "ParseOk",
    "RuntimeClosedError",
    "Session",
    "StartRejectedError",
    "StreamContext",
    "StreamInfo",
    "StreamProjection",
    "StreamRuntime",
    "StreamSettledError",
    "StreamTimeoutError",
    "StreamWidget",
    "StreamnbError",
    "UnknownKindError",
    "UnknownStreamError",
    "cancelled",
    "completed",
    "failed",
    "output",
    "parse_ok",
    "progress",
    "project_attached_stream",
    "project_streams",
    "providers",
    "read_until_terminal",
    "rooms",
    "server",
    "testing",
]
