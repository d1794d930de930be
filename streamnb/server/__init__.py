"""streamnb.server: the same handlers served to browsers and HTTP clients.

* :func:`create_app` - the Starlette app: SSE (resumable) and WebSocket streams,
  seed 002's ``/chat`` with its HTML page, the Vercel AI SDK UI message stream
  at ``/api/chat``, and the ledger as JSON.
* :func:`serve_in_background` - run it with uvicorn on the running loop (a
  notebook's kernel loop); returns a :class:`ServerHandle`.
* ``streamnb serve`` (:mod:`streamnb.cli`) - run it from a shell.

Every app refuses what a page of another site could send (:mod:`.guard`: the
Host allow-list, Origin, JSON bodies), bounds what clients can hold open
(:mod:`.limits`, :mod:`.timeouts`) and never lets a long replay stall its loop
(:mod:`.slices`).

Requires Starlette and uvicorn; the core (``import streamnb``) does not import
this package.
"""

from __future__ import annotations

from .app import create_app
from .background import ServerHandle, serve_in_background

__all__ = ["ServerHandle", "create_app", "serve_in_background"]
