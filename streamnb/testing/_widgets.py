"""Press the widgets' buttons from Python, through the message path the browser uses.

The front end turns a click on **Stop** (or Escape) into the custom message
``{"type": "stop"}`` and a **Send** (or Enter) into ``{"type": "send", "text": ...}``.
These helpers hand the same dicts to the widget's registered custom-message
handler, exactly as ipywidgets does when the message arrives from the browser,
so a notebook run without a browser (nbval, a script) shows the same cancel and
send paths: the handler hands the work to the runtime's loop, and the result
(or error) lands in the widget's traits.

Typical use in a notebook cell::

    from streamnb.testing import press_send, press_stop
    press_send(widget, "hello")
    press_stop(widget)
    await widget.wait(timeout_s=10)
    widget.status                       # 'cancelled'

The helpers return at once (like a click); then ``await widget.wait(...)`` in a
cell or async test, or ``runtime.run(widget.wait(...))`` from synchronous code.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

__all__ = [
    "WidgetLike",
    "press_enter",
    "press_escape",
    "press_hello",
    "press_send",
    "press_stop",
    "recorded_messages",
]


class WidgetLike(Protocol):
    """What the helpers need: an ipywidgets widget (the streamnb widgets)."""

    def _handle_custom_msg(self, content: Any, buffers: list[bytes]) -> None: ...

    def send(self, content: Any, buffers: Any = None) -> None: ...


def _deliver(widget: WidgetLike, content: dict[str, Any]) -> None:
    # ipywidgets' Widget._handle_msg calls this for a custom message from the browser.
    widget._handle_custom_msg(content, [])


def press_stop(widget: WidgetLike) -> None:
    """Press **Stop**: the kernel side calls ``session.cancel("user pressed stop")``.

    Returns at once; the ``cancelled`` status follows. On a settled stream it
    changes nothing.
    """
    _deliver(widget, {"type": "stop"})


def press_send(widget: WidgetLike, text: str) -> None:
    """Type ``text`` into **Message** and press **Send**.

    Returns at once. A refused send (e.g. the stream settled, or a chat reply
    is still streaming) sets the widget's ``error`` trait instead of raising,
    as in the browser.

    Raises
    ------
    TypeError
        ``text`` is not a string (the front end only ever sends strings).
    """
    if not isinstance(text, str):
        raise TypeError(f"press_send types text into a text box; got {type(text).__name__}")
    _deliver(widget, {"type": "send", "text": text})


def press_enter(widget: WidgetLike, text: str) -> None:
    """Type ``text`` and press Enter in **Message** (same message as :func:`press_send`)."""
    press_send(widget, text)


def press_escape(widget: WidgetLike) -> None:
    """Press Escape in **Message** (same message as :func:`press_stop`)."""
    press_stop(widget)


def press_hello(widget: WidgetLike) -> None:
    """Act as a view rendered late (page reload): ask for a snapshot of the text so far.

    The widget answers with a ``{"type": "snapshot", ...}`` custom message; see it
    with :func:`recorded_messages`.
    """
    _deliver(widget, {"type": "hello"})


@contextmanager
def recorded_messages(widget: WidgetLike) -> Iterator[list[dict[str, Any]]]:
    """Record the custom messages the widget sends to the browser while the block runs.

    Yields the list the messages are appended to (``delta`` and ``snapshot``
    dicts, see ``streamnb/widget/_protocol.py``); they are still sent on as
    usual. Example::

        with recorded_messages(widget) as sent:
            press_hello(widget)
        sent[-1]["type"]        # 'snapshot'
    """
    sent: list[dict[str, Any]] = []
    original = widget.send
    wrapped_already = "send" in vars(widget)  # an outer recorded_messages block

    def send(content: Any, buffers: Any = None) -> None:
        sent.append(content)
        original(content, buffers)

    widget.send = send  # type: ignore[method-assign]
    try:
        yield sent
    finally:
        if wrapped_already:
            widget.send = original  # type: ignore[method-assign]
        else:
            del widget.send  # the instance attribute shadowed the class's method
