"""The chatbot's settlement event, one definition for every chat handler.

Seed 000's chatbot commits ``<kind>.settled`` with ``{"kind": terminal kind,
"terminal": frame}``. The demo chatbot (:mod:`streamnb.demo`), the live
provider's (:func:`streamnb.providers.chat_handler`) and a replayed cassette
(:func:`streamnb.providers.cassette_handler`) all commit it, so one ledger query
reads the replies of any of them.
"""

from __future__ import annotations

from collections.abc import Callable

from .._frames import Frame
from .._ledger import LedgerTx

__all__ = ["settled_event"]


def settled_event(kind: str) -> Callable[[Frame, LedgerTx], None]:
    """A ``commit_terminal`` writing the ledger event ``<kind>.settled``.

    Parameters
    ----------
    kind : str
        The handler's kind; the event is named ``f"{kind}.settled"``.

    Returns
    -------
    callable ``(terminal: Frame, tx: LedgerTx) -> None``
        Inserts ``{"kind": terminal.kind, "terminal": terminal}`` (the frame is
        stored as its JSON object) in the settlement's transaction.

    Examples
    --------
    >>> import streamnb as sn
    >>> runtime = sn.StreamRuntime()
    >>> async def run(start, input, ctx):
    ...     yield sn.completed()
    >>> runtime.register(sn.AttachedStreamHandler(
    ...     kind="demo.job", mode="output_only", parse_start=sn.parse_ok, run=run,
    ...     commit_terminal=settled_event("demo.job")))
    AttachedStreamHandler(kind='demo.job', mode='output_only', on_detach='abort')
    >>> async def job():
    ...     session = await runtime.attach("demo.job", None)
    ...     return await runtime.wait(session.stream_ref)
    >>> runtime.run(job()).kind
    'completed'
    >>> runtime.ledger.events()["kind"].tolist()
    ['demo.job.settled']
    >>> runtime.close()
    """

    def commit_terminal(terminal: Frame, tx: LedgerTx) -> None:
        tx.insert_event(f"{kind}.settled", {"kind": terminal.kind, "terminal": terminal})

    return commit_terminal
