"""streamnb: attached streams native to Jupyter.

A *handler* defines a stream kind; the :class:`StreamRuntime` runs *streams* of
it, each observed by *sessions* that read *frames*, send input, cancel and
detach; every stream ends in exactly one *settlement* committed to the
:class:`Ledger`; :func:`project_attached_stream` folds frames into pandas
DataFrames.

Importing ``streamnb`` loads only the core (asyncio, sqlite3, pandas: nothing
from Jupyter, HTTP or the providers). Everything else loads on first use:
the widgets ``StreamWidget``, ``ChatWidget`` and ``ChatRoomsWidget`` (Jupyter),
``ChatRooms``, and the public subpackages, one per audience:

* ``streamnb.widget`` - the anywidget widgets;
* ``streamnb.server`` - the ASGI app (SSE, WebSocket, ``/chat``, the AI SDK protocol);
* ``streamnb.providers`` - token sources: OpenAI-compatible APIs, cassettes, fakes;
* ``streamnb.rooms`` - multi-room chat (seed 004);
* ``streamnb.demo`` - the seeds' handlers, ready to register;
* ``streamnb.testing`` - checkpoint paths, fake token sources, widget button presses.

``dir(streamnb)`` lists exactly ``__all__``.

Examples
--------
>>> import streamnb as sn
>>> runtime = sn.StreamRuntime()
>>> async def hello(start, input, ctx):
...     yield sn.output("hello, ")
...     yield sn.output(start["name"])
...     yield sn.completed()
>>> runtime.register(sn.AttachedStreamHandler(kind="demo.hello", run=hello))
AttachedStreamHandler(kind='demo.hello', mode='output_only', on_detach='abort')
>>> session = runtime.run(runtime.attach("demo.hello", {"name": "notebook"}))
>>> frames = runtime.run(sn.read_until_terminal(session.output))
>>> sn.project_attached_stream(frames, session.stream_ref).text()
'hello, notebook'
>>> runtime.ledger.streams()["status"].tolist()
['completed']
>>> runtime.close()
"""

# no "from __future__ import annotations" here: it would bind "annotations" in this
# namespace, which is exactly the public surface (see tests/test_exported_members.py)
import importlib as _importlib
import typing as _typing

from ._cursor import FrameBatch, FrameCursor
from ._errors import (
    HandlerDefinitionError,
    InputNotAcceptedError,
    InvalidFrameError,
    LedgerBusyError,
    LedgerError,
    LedgerQueryError,
    LedgerTimeoutError,
    LedgerUnavailableError,
    OutputConsumedError,
    RuntimeClosedError,
    SessionDetachedError,
    StartRejectedError,
    StreamnbError,
    StreamSettledError,
    StreamTimeoutError,
    UnknownKindError,
    UnknownStreamError,
    WaitInterruptedError,
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
from ._runtime import StreamRuntime, read_until_terminal
from ._session import Session, set_display_hook
from ._stream import StreamInfo

if _typing.TYPE_CHECKING:
    from . import demo, providers, rooms, server, testing, widget
    from .rooms import ChatRooms
    from .widget import ChatRoomsWidget, ChatWidget, StreamWidget

__version__ = "0.1.0"

#: names loaded on first use: name -> (module, attribute or None for the module itself)
_LAZY: dict[str, tuple[str, str | None]] = {
    "ChatRooms": ("streamnb.rooms", "ChatRooms"),
    "ChatRoomsWidget": ("streamnb.widget", "ChatRoomsWidget"),
    "ChatWidget": ("streamnb.widget", "ChatWidget"),
    "StreamWidget": ("streamnb.widget", "StreamWidget"),
    "demo": ("streamnb.demo", None),
    "providers": ("streamnb.providers", None),
    "rooms": ("streamnb.rooms", None),
    "server": ("streamnb.server", None),
    "testing": ("streamnb.testing", None),
    "widget": ("streamnb.widget", None),
}


def _display_session(session: Session) -> None:
    """``display(session)`` in Jupyter: a :class:`StreamWidget` attached to it."""
    from IPython.display import display

    from .widget import StreamWidget

    display(StreamWidget(session))  # type: ignore[no-untyped-call]


set_display_hook(_display_session)
del set_display_hook


def __getattr__(name: str) -> _typing.Any:
    """Load the widgets (Jupyter), ``ChatRooms`` and the subpackages on first use."""
    try:
        module_name, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'streamnb' has no attribute {name!r}") from None
    module = _importlib.import_module(module_name)
    value = module if attr is None else getattr(module, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """Exactly the public names (``__all__``), the lazy ones included (for tab completion)."""
    return sorted(__all__)


__all__ = [
    "AbortSignal",
    "AttachedStreamHandler",
    "ChatRooms",
    "ChatRoomsWidget",
    "ChatWidget",
    "Frame",
    "FrameBatch",
    "FrameCursor",
    "HandlerDefinitionError",
    "InputNotAcceptedError",
    "InvalidFrameError",
    "Ledger",
    "LedgerBusyError",
    "LedgerError",
    "LedgerQueryError",
    "LedgerTimeoutError",
    "LedgerTx",
    "LedgerUnavailableError",
    "OutputConsumedError",
    "ParseError",
    "ParseOk",
    "RuntimeClosedError",
    "Session",
    "SessionDetachedError",
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
    "WaitInterruptedError",
    "__version__",
    "cancelled",
    "completed",
    "demo",
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
    "widget",
]
