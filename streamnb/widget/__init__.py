"""The Jupyter layer: :class:`StreamWidget`, :class:`ChatWidget` and :class:`ChatRoomsWidget`.

Imported lazily by ``streamnb`` (``sn.StreamWidget``), so the core never loads
Jupyter packages. All three subclass :class:`~streamnb.widget._base.LoopWidget`
(anywidget). The front end lives in ``streamnb/static/`` (``widget.js``,
``chat.js``, ``rooms.js``, ``widget.css``, ``rooms.css``, each module joined
behind the shared ``common.js`` by ``_assets.py``); the message protocol is in
``_protocol.py``. Assistant text renders as Markdown through ``markdown.bundle.js``,
sent once per kernel (``_markdown.py``). Each widget is displayed under a display id
of its own so that a saved notebook shows its transcript without a kernel: a settled
stream's output becomes a static transcript, an open chat keeps a saved copy of its
conversation (``_saved.py``, rendered by ``_transcript.py``).

Departure from the seeds: the seeds' browser UIs receive every token as its
own message; here tokens are batched into deltas of at most one message per
``flush_interval_s`` per widget, because jupyter_server drops iopub messages
above 1000 per second.
"""

from __future__ import annotations

from ._chat import ChatWidget
from ._rooms import ChatRoomsWidget
from ._stream import StreamWidget

__all__ = ["ChatRoomsWidget", "ChatWidget", "StreamWidget"]
