"""How the widgets are displayed, so that a saved notebook shows their transcripts.

JupyterLab ranks the widget renderer above every other mimetype, so a saved output
holding ``application/vnd.jupyter.widget-view+json`` shows "Error displaying widget:
model not found" once reopened without the kernel that held the model (it saves no
widget state by default), whatever ``text/plain`` or ``text/html`` sits beside it.
A saved notebook shows a transcript only where no live widget output is left. So each
widget is displayed under a ``display_id`` of its own (``_ipython_display_``), and:

* a :class:`~streamnb.StreamWidget` is live while its stream runs; once the stream
  settles (or the widget is closed) its output is updated (``update_display_data``) to
  the static transcript of :mod:`streamnb.widget._transcript`, which is what JupyterLab
  then shows and saves; a settled widget displayed again shows that transcript at once;
* a :class:`~streamnb.ChatWidget` or :class:`~streamnb.ChatRoomsWidget` stays live as
  long as it is open (another message can always come), so it is displayed as two
  outputs: the live widget, and a saved copy of its transcript kept up to date after
  every settled reply. The live view hides that copy while it is on the page (its
  ``_uid`` is in the copy's ``data-streamnb-saved``); without the kernel only the copy
  shows, next to the widget renderer's message for the live output. ``close()``
  turns the live output into the transcript and empties the copy.

Updates are published in an empty :mod:`contextvars` context: ipykernel then parents
them to the request it is handling now rather than to the cell that displayed the
widget. JupyterLab routes an update by its ``display_id`` either way, but ``nbclient``
(``jupyter nbconvert --execute``, nbval) applies only updates that arrive with the cell
it is running; so an update published while no cell runs is published once more at the
start of the next cell (IPython's ``pre_run_cell``), and executed notebooks store the
final transcripts too. A page reloaded while a stream ran has lost the routes of that
display: its output updates again once the cell is run again.
"""

from __future__ import annotations

import contextvars
from typing import Any

from ._transcript import Bundle

__all__ = [
    "EMPTY_BUNDLE",
    "LiveWithSavedCopy",
    "SavedDisplay",
    "display_bundle",
    "in_ipython",
    "live_bundle",
    "update_bundle",
]

#: what a saved copy holds once its widget closed (an empty output)
EMPTY_BUNDLE: Bundle = {"text/plain": ""}


def in_ipython() -> bool:
    """True when an IPython shell runs in this process (a kernel, or IPython itself)."""
    try:
        from IPython.core.getipython import get_ipython
    except ImportError:  # pragma: no cover - ipywidgets depends on IPython
        return False
    return get_ipython() is not None  # type: ignore[no-untyped-call]


class _Cells:
    """Whether a cell is running, from IPython's ``pre_run_cell``/``post_run_cell``, and the
    updates published while none was (published again when the next one starts)."""

    def __init__(self) -> None:
        self.hooked = False
        self.running = False
        self.pending: dict[str, Bundle] = {}

    def hook(self) -> None:
        if self.hooked:
            return
        from IPython.core.getipython import get_ipython

        shell = get_ipython()  # type: ignore[no-untyped-call]
        if shell is None:
            return
        shell.events.register("pre_run_cell", self._pre_run_cell)
        shell.events.register("post_run_cell", self._post_run_cell)
        self.hooked = True
        self.running = True  # hooked from a display, inside a cell

    def _pre_run_cell(self, *_: object) -> None:
        self.running = True
        pending, self.pending = self.pending, {}
        for display_id, bundle in pending.items():
            _publish_update(bundle, display_id)

    def _post_run_cell(self, *_: object) -> None:
        self.running = False


_cells = _Cells()


def display_bundle(bundle: Bundle, display_id: str) -> None:
    """Display a raw mimebundle under ``display_id`` (a new output)."""
    from IPython.display import display

    _cells.hook()
    display(bundle, raw=True, display_id=display_id)  # type: ignore[no-untyped-call]


def update_bundle(bundle: Bundle, display_id: str) -> None:
    """Replace every output shown under ``display_id`` with ``bundle`` (see module doc)."""
    if not in_ipython():
        return
    _cells.hook()
    contextvars.Context().run(_publish_update, bundle, display_id)
    if not _cells.running:
        _cells.pending[display_id] = bundle


def _publish_update(bundle: Bundle, display_id: str) -> None:
    from IPython.display import update_display

    update_display(bundle, raw=True, display_id=display_id)  # type: ignore[no-untyped-call]


def live_bundle(widget: Any) -> Bundle:
    """The widget's live output: its ``widget-view`` reference and ``text/plain`` repr."""
    bundle = widget._repr_mimebundle_()  # anywidget: (data, metadata); ipywidgets: data
    data: Bundle = bundle[0] if isinstance(bundle, tuple) else bundle
    return data


class SavedDisplay:
    """A widget shown under a display id of its own (``streamnb-<_uid>``); a mixin of the
    streamnb widgets (which define ``_uid`` and ``_closed``)."""

    _uid: str
    _closed: bool
    #: displayed at least once: its display id has outputs to update
    _displayed = False

    @property
    def _display_id(self) -> str:
        return f"streamnb-{self._uid}"

    def transcript_bundle(self, saved: bool = False) -> Bundle:  # pragma: no cover - abstract
        """The static transcript (``saved``: the copy a live view hides)."""
        raise NotImplementedError


class LiveWithSavedCopy(SavedDisplay):
    """A widget that stays live while open (a chat, the rooms): displayed as the live view
    and, below it under ``<display id>-saved``, a copy of its transcript."""

    def _ipython_display_(self) -> None:
        self._displayed = True
        if self._closed:
            display_bundle(self.transcript_bundle(), self._display_id)
            return
        display_bundle(live_bundle(self), self._display_id)
        display_bundle(self.transcript_bundle(saved=True), self._display_id + "-saved")

    def _save_copy(self) -> None:
        """Refresh the saved copy (after a settled reply)."""
        if self._displayed and not self._closed:
            update_bundle(self.transcript_bundle(saved=True), self._display_id + "-saved")

    def _show_closed(self) -> None:
        """The widget closed: its output becomes the transcript, the copy empties."""
        if self._displayed:
            update_bundle(self.transcript_bundle(), self._display_id)
            update_bundle(EMPTY_BUNDLE, self._display_id + "-saved")
