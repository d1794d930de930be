"""Test helpers: checkpoint paths, fake token sources, and pressing widget buttons.

The one public face of the private modules beside it, as ``trio.testing`` is:

* checkpoint paths (``streamnb/testing/_checkpoints.py``): :func:`assert_checkpoint`,
  :func:`checkpoint_path`, :class:`CheckpointMismatch`, :class:`CheckpointSyntaxError`;
  the seeds' notation for an expected frame sequence,
  e.g. ``opened -> progress -> output* -> completed``;
* fake tokens, re-exported from the fake provider (:mod:`streamnb.providers.fake`):
  :class:`FakeTokenSource`, :func:`fake_tokens`, :func:`lorem_tokens`;
* widget presses (``streamnb/testing/_widgets.py``): :func:`press_stop`,
  :func:`press_send`, :func:`press_enter`, :func:`press_stop_shortcut`,
  :func:`press_hello`, :func:`recorded_messages`; they drive
  a :class:`~streamnb.StreamWidget` or :class:`~streamnb.ChatWidget` through the
  custom-message path the browser uses, so notebooks run under nbval show the
  Stop and Send paths without a browser.

Production code never imports this package.

Examples
--------
>>> from streamnb.testing import assert_checkpoint, checkpoint_path
>>> kinds = ["opened", "progress", "output", "output", "completed"]
>>> checkpoint_path(kinds)
'opened -> progress -> output×2 -> completed'
>>> assert_checkpoint(kinds, "opened -> progress -> output* -> completed")
"""

from __future__ import annotations

from ..providers.fake import FakeTokenSource, fake_tokens, lorem_tokens
from ._checkpoints import (
    CheckpointMismatch,
    CheckpointSyntaxError,
    assert_checkpoint,
    checkpoint_path,
)
from ._widgets import (
    WidgetLike,
    press_enter,
    press_hello,
    press_send,
    press_stop,
    press_stop_shortcut,
    recorded_messages,
)

__all__ = [
    "CheckpointMismatch",
    "CheckpointSyntaxError",
    "FakeTokenSource",
    "WidgetLike",
    "assert_checkpoint",
    "checkpoint_path",
    "fake_tokens",
    "lorem_tokens",
    "press_enter",
    "press_hello",
    "press_send",
    "press_stop",
    "press_stop_shortcut",
    "recorded_messages",
]
