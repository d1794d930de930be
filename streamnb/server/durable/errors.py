"""Refusals of the Durable Streams endpoint: status, error code, message and protocol headers.

Every refusal has the server's usual JSON body (``{"error": {"type",
"message"}}``, :mod:`streamnb.server.errors`) plus the headers the protocol
asks for, so a client can react without parsing the body (PROTOCOL.md §5.2:
``Stream-Closed`` and ``Stream-Next-Offset`` on a 409 for a closed stream,
``Producer-Epoch`` on a 403, ``Producer-Expected-Seq`` and
``Producer-Received-Seq`` on a 409 sequence gap).

==========================  ======  ==========================================
type                        status  when
==========================  ======  ==========================================
``invalid_offset``          400     malformed offset, or one past the tail
``invalid_header``          400     a protocol header has a bad value
``empty_append``            400     POST without a body and without close
``malformed_json``          400     a JSON stream got a body that is not JSON
``empty_json_array``        400     a JSON stream got ``[]`` to append
``producer_epoch_seq``      400     a new producer epoch must start at seq 0
``stream_not_found``        404     no stream at this URL (or it expired)
``stream_gone``             410     deleted while forks still read it, or the
                                    offset is before the retained frames
``read_only_stream``        403     a write to ``/v1/stream/streamnb/...``
``stale_producer_epoch``    403     zombie fencing (§5.2.1)
``stream_exists``           409     PUT with a different configuration
``stream_closed``           409     append to a closed stream
``content_type_mismatch``   409     append with another content type
``stream_seq_conflict``     409     ``Stream-Seq`` not above the last one
``producer_seq_gap``        409     ``Producer-Seq`` skipped a value
``body_too_large``          413     the server's body cap
``store_unavailable``       503     the database is locked or failing (nothing
                                    changed; ``Retry-After: 1``)
``store_closed``            503     the server is shutting down
==========================  ======  ==========================================
"""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import HTTPError

__all__ = ["ProtocolError", "gone", "not_found"]


class ProtocolError(HTTPError):
    """A Durable Streams request the server refuses, with the protocol's headers.

    Parameters
    ----------
    status : int
        HTTP status code.
    type : str
        Stable snake_case error code (see the module docstring).
    message : str
        What was wrong and what to do.
    headers : mapping of str to str, optional
        Protocol headers for the response (``Stream-Closed``...).
    """

    def __init__(
        self, status: int, type: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(status, type, message)
        self.headers: dict[str, str] = dict(headers or {})


def not_found(path: str) -> ProtocolError:
    """404 ``stream_not_found`` for the stream at ``path``."""
    return ProtocolError(
        404,
        "stream_not_found",
        f"no stream at {path!r}; create it with PUT (it may also have expired or been deleted)",
    )


def gone(path: str) -> ProtocolError:
    """410 ``stream_gone``: deleted, kept only because forks still read its data (§4.2)."""
    return ProtocolError(
        410,
        "stream_gone",
        f"the stream at {path!r} was deleted; its forks still read its data, so the URL "
        "cannot be used again until they are deleted",
    )
