"""What a settlement carries to the ledger: the handler's write buffer and the runtime's record.

Both are plain data, the same for every backend: ``commit_terminal(terminal, tx)``
fills a :class:`LedgerTx` on the event loop, the runtime wraps it in a
:class:`Settlement`, and the backend applies both in one transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .._errors import LedgerError
from .._frames import Frame
from .._json import dumps
from .._text import mend, mend_json

__all__ = ["LedgerTx", "Settlement", "failed_instead"]


class LedgerTx:
    """The write buffer ``commit_terminal(terminal, tx)`` receives.

    Writes made here are applied in the same transaction as the runtime's
    settlement record for ``stream_ref``: all of them commit, or (if one fails)
    none do and the stream settles ``failed`` with reason ``settlement_error``.

    Examples
    --------
    >>> tx = LedgerTx("st_1")
    >>> tx.insert_event("demo.settled", {"ok": True})
    >>> tx.insert_event({"kind": "demo.note", "payload": "the seeds' single-object form"})
    >>> tx.insert_event("demo.bad", {"when": object()})
    Traceback (most recent call last):
    ...
    streamnb._errors.LedgerError: payload of event 'demo.bad' is not JSON-serializable ...
    """

    # read by the backend that applies the settlement (streamnb/_ledger/sqlite.py)
    __slots__ = ("_events", "_statements", "stream_ref")

    def __init__(self, stream_ref: str) -> None:
        self.stream_ref = stream_ref
        self._events: list[tuple[str, str | None]] = []  # (kind, payload JSON or None)
        self._statements: list[tuple[str, tuple[Any, ...]]] = []  # (sql, params)

    def insert_event(self, kind: str | dict[str, Any], payload: Any = None) -> None:
        """Record an event ``kind`` with a JSON ``payload`` for this stream.

        Accepts ``tx.insert_event("x.settled", {...})`` or the seeds' single
        object ``tx.insert_event({"kind": "x.settled", "payload": {...}})``.
        A :class:`~streamnb.Frame` inside the payload is stored as its JSON form.

        Raises
        ------
        LedgerError
            ``kind`` is not a non-empty string or ``payload`` is not JSON.
        """
        if isinstance(kind, dict):
            if payload is not None or "kind" not in kind:
                raise LedgerError(
                    "insert_event takes (kind, payload) or one {'kind': ..., 'payload': ...} dict"
                )
            spec = kind
            kind, payload = spec["kind"], spec.get("payload")
        if not isinstance(kind, str) or not kind:
            raise LedgerError(f"event kind must be a non-empty string, got {kind!r}")
        try:
            text = None if payload is None else dumps(payload)
        except (TypeError, ValueError) as exc:
            raise LedgerError(
                f"payload of event {kind!r} is not JSON-serializable ({exc}); "
                "store plain dicts, lists, strings and numbers"
            ) from exc
        self._events.append((kind, text))

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Queue one SQL statement (for a handler's own tables) in this transaction.

        The statement may create, change and read the handler's own tables and
        read the runtime's; it may not change ``streams``, ``events``,
        ``frames`` (use :meth:`insert_event`) or the Durable Streams ``ds_*``
        tables, end or nest the transaction (``COMMIT``, ``SAVEPOINT``...),
        ``ATTACH`` a file or set a ``PRAGMA``. Such a statement is refused when
        the settlement is applied, and the stream settles ``failed`` (reason
        ``settlement_error``) with none of this transaction's writes.
        """
        self._statements.append((sql, tuple(params)))


@dataclass(slots=True)
class Settlement:
    """One stream's settlement as the runtime hands it to the ledger's backend."""

    stream_ref: str
    status: str
    reason: str | None
    terminal: Any
    settled_at: float
    tx: LedgerTx | None = None
    terminal_frame: Frame | None = None
    #: filled by the backend: (status, reason, terminal) actually committed
    committed: tuple[str, str | None, Any] | None = field(default=None)
    #: filled by the backend when the handler's writes failed and a ``failed`` record
    #: (reason ``settlement_error``) was committed instead: why they failed
    fallback_error: str | None = None
    #: filled by a shared backend when another process had settled the stream first (its
    #: runtime's lease was taken over): the terminal frame that was committed instead
    committed_frame: Frame | None = None


def failed_instead(frame: Frame, reason: str, error: str, **terminal: Any) -> Frame:
    """``frame`` turned ``failed`` because settling it failed (same seq and time).

    The runtime announces it, and a backend that stores terminal frames stores
    the same one (``reason="settlement_error"``, ``terminal["settlement_error"]``).
    """
    return frame._replace(
        kind="failed",
        reason=reason,
        error=mend(error),
        terminal=mend_json({"ok": False, **terminal}),
    )
