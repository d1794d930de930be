"""Press the widgets' buttons from Python, through the message path the browser uses.

The front end turns a click on **Stop** (or its shortcut, Ctrl+. / Cmd+.) into the
custom message
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
    "press_hello",
    "press_send",
    "press_stop",
    "press_stop_shortcut",
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

    Parameters
    ----------
    widget : StreamWidget or ChatWidget

    Examples
    --------
    A slow reply, stopped after its first token:

    >>> import streamnb as sn
    >>> from streamnb.demo import chatbot_handler
    >>> from streamnb.providers import FakeTokenSource, lorem_tokens
    >>> runtime = sn.StreamRuntime()
    >>> slow = FakeTokenSource(lorem_tokens(400), rate_tokens_per_s=200)
    >>> _ = runtime.register(chatbot_handler(source=slow))
    >>> async def stop_early():
    ...     session = await runtime.attach("tutorial.streaming_chatbot", {})
    ...     widget = sn.StreamWidget(session)
    ...     await session.send("tell me everything")
    ...     async for frame in runtime.follow(session.stream_ref):
    ...         if frame.kind == "output":
    ...             press_stop(widget)
    ...             break
    ...     return widget, await widget.wait(timeout_s=30)
    >>> widget, status = runtime.run(stop_early())
    >>> status, widget.reason
    ('cancelled', 'user pressed stop')
    >>> widget.close()
    >>> runtime.close()
    """
    _deliver(widget, {"type": "stop"})


def press_send(widget: WidgetLike, text: str) -> None:
    """Type ``text`` into **Message** and press **Send**.

    Returns at once. A refused send (e.g. the stream settled, or a chat reply
    is still streaming) sets the widget's ``error`` trait instead of raising,
    as in the browser.

    Parameters
    ----------
    widget : StreamWidget or ChatWidget
        A ``bidi`` stream's widget, or a chat.
    text : str
        What the user typed.

    Raises
    ------
    TypeError
        ``text`` is not a string (the front end only ever sends strings).

    Examples
    --------
    >>> import streamnb as sn
    >>> from streamnb.demo import chatbot_handler
    >>> runtime = sn.StreamRuntime()
    >>> _ = runtime.register(chatbot_handler())
    >>> async def chat(text):
    ...     session = await runtime.attach("tutorial.streaming_chatbot", {})
    ...     widget = sn.StreamWidget(session)
    ...     press_send(widget, text)
    ...     return widget, await widget.wait(timeout_s=30)
    >>> widget, status = runtime.run(chat("hello"))
    >>> status, widget.text()
    ('completed', 'streamnb reply to hello')
    >>> widget.close()
    >>> runtime.close()
    """
    if not isinstance(text, str):
        raise TypeError(f"press_send types text into a text box; got {type(text).__name__}")
    _deliver(widget, {"type": "send", "text": text})


def press_enter(widget: WidgetLike, text: str) -> None:
    """Type ``text`` and press Enter in **Message** (same message as :func:`press_send`)."""
    press_send(widget, text)


def press_stop_shortcut(widget: WidgetLike) -> None:
    """Press Ctrl+. (Cmd+. on macOS) in the widget: Stop's shortcut, the same message as
    :func:`press_stop`. (Escape sends nothing: in the Message box it only leaves the box,
    as JupyterLab users expect.)"""
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
    usual.

    Examples
    --------
    >>> import streamnb as sn
    >>> from streamnb.demo import output_only_handler
    >>> runtime = sn.StreamRuntime()
    >>> _ = runtime.register(output_only_handler())
    >>> async def late_view():
    ...     session = await runtime.attach("tutorial.output_only", {})
    ...     widget = sn.StreamWidget(session)
    ...     await widget.wait(timeout_s=30)
    ...     with recorded_messages(widget) as sent:
    ...         press_hello(widget)
    ...     return widget, sent
    >>> widget, sent = runtime.run(late_view())
    >>> [(m["type"], m["texts"]) for m in sent]
    [('snapshot', {'stdout': 'hello'})]
    >>> widget.close()
    >>> runtime.close()
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
