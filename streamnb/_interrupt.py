"""Telling a notebook's *Kernel -> Interrupt* apart from other cancellations.

ipykernel runs a cell that uses ``await`` as one asyncio task, whose coroutine is
IPython's ``InteractiveShell.run_cell_async``; on SIGINT (Kernel -> Interrupt) it
cancels that task, so the ``await`` the cell was in raises ``CancelledError`` and the
cell ends with a bare ``CancelledError`` traceback (ipykernel ``_cancel_on_sigint``).
streamnb's waits (``session.output``, ``read_until_terminal``, ``session.wait``,
``runtime.wait``) use :func:`cell_interrupted` to turn exactly that case into a
:class:`~streamnb.WaitInterruptedError` that says what happened to the stream. Any
other cancellation (a timeout, a task group, a task cancelled by its owner) happens in
another task, or in no cell at all, and is re-raised unchanged. A cell that wraps its
own ``await`` in ``asyncio.timeout()`` is the one case this cannot tell apart.

Nothing here imports Jupyter: the cell task is recognised by its coroutine's name.
"""

from __future__ import annotations

import asyncio

__all__ = ["cell_interrupted"]

#: ``__qualname__`` of the coroutine ipykernel runs an async cell in (IPython)
CELL_COROUTINE = "InteractiveShell.run_cell_async"


def cell_interrupted() -> bool:
    """True inside a notebook cell's own task while it is being cancelled.

    Call it from an ``except asyncio.CancelledError`` block.

    Examples
    --------
    Outside a notebook cell it is always False:

    >>> async def probe():
    ...     return cell_interrupted()
    >>> asyncio.run(probe())
    False
    """
    try:
        task = asyncio.current_task()
    except RuntimeError:
        return False
    if task is None:
        return False
    name = getattr(task.get_coro(), "__qualname__", "")
    if name != CELL_COROUTINE:
        return False
    cancelling = getattr(task, "cancelling", None)  # Python 3.11+
    return cancelling is None or cancelling() > 0
