"""The protocol's decisions, as pure functions every store backend applies in one transaction.

A backend loads the stream's state (and the producer's), calls these, and
writes what they decided; so SQLite and PostgreSQL refuse the same requests
with the same status, in the same order:

``check_append`` (PROTOCOL.md §5.2, §5.2.1, §5.3):

1. producer fencing and deduplication first (transport-level retries are
   answered before anything else, §5.2.1): a stale epoch is 403, a retried
   ``(id, epoch, seq)`` is a 204 duplicate (also on a closed stream, which
   makes the retried closing request idempotent);
2. a closed stream: a close-only request succeeds again (idempotent close,
   §5.3), anything else is 409 with ``Stream-Closed`` (§5.2 "Error
   Precedence": closure is checked before the content type);
3. an empty body without ``Stream-Closed``: 400;
4. content type: missing 400, different media type 409;
5. JSON mode: the body must be JSON, and not ``[]`` (§9.1);
6. producer sequencing: a new epoch starts at seq 0 (400), gaps are 409
   with the expected and received seq;
7. ``Stream-Seq`` must be byte-wise greater than the last one (409). Its
   scope is the stream (§5.2 asks servers to document the scope).

``config_matches`` decides between 200 and 409 for a ``PUT`` on an existing
stream (§5.1, §4.2).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from .errors import ProtocolError
from .offsets import Offset
from .protocol import (
    DEFAULT_CONTENT_TYPE,
    NEXT_OFFSET,
    PRODUCER_EPOCH,
    PRODUCER_EXPECTED_SEQ,
    PRODUCER_RECEIVED_SEQ,
    STREAM_CLOSED,
    is_json,
    json_messages,
    media_type,
)
from .store import AppendRequest, CreateRequest

__all__ = [
    "Action",
    "AppendPlan",
    "ProducerState",
    "StreamState",
    "check_append",
    "closed_conflict",
    "config_matches",
    "create_config",
    "encode_body",
]


@dataclass(frozen=True, slots=True)
class StreamState:
    """The parts of a stored stream the append rules read."""

    content_type: str
    tail: int
    closed: bool
    last_stream_seq: str | None


@dataclass(frozen=True, slots=True)
class ProducerState:
    """A producer's fencing state on one stream: current epoch, highest accepted seq."""

    epoch: int
    last_seq: int


class Action(enum.Enum):
    """What a backend does with a checked append."""

    APPEND = "append"  # write the chunk (if any), close if asked
    DUPLICATE = "duplicate"  # a producer retry: change nothing, answer 204
    ALREADY_CLOSED = "already_closed"  # close-only on a closed stream: change nothing, 204


@dataclass(frozen=True, slots=True)
class AppendPlan:
    """The decision for one append.

    Attributes
    ----------
    action : Action
    chunk : bytes
        What to store (JSON: compact messages joined by commas); empty for a
        close-only request.
    count : int
        Messages in ``chunk`` (JSON), or 1 for a non-empty byte chunk.
    producer : ProducerState or None
        The producer's state to store after the append.
    """

    action: Action
    chunk: bytes = b""
    count: int = 0
    producer: ProducerState | None = None


def closed_conflict(tail: Offset) -> ProtocolError:
    """409 ``stream_closed`` with ``Stream-Closed`` and the final offset (§5.2)."""
    return ProtocolError(
        409,
        "stream_closed",
        "the stream is closed: it accepts no more appends (read it to the end; its last "
        "offset is in Stream-Next-Offset)",
        {STREAM_CLOSED: "true", NEXT_OFFSET: tail.text},
    )


def encode_body(content_type: str, body: bytes, *, allow_empty: bool) -> tuple[bytes, int]:
    """A body as stored: JSON messages joined by commas (§9.1), or the bytes as sent.

    Returns
    -------
    (bytes, int)
        The chunk and its message count (0 for an empty chunk).
    """
    if not body:
        return b"", 0
    if is_json(content_type):
        messages = json_messages(body, allow_empty=allow_empty)
        return b",".join(messages), len(messages)
    return body, 1


def check_append(
    stream: StreamState, producer: ProducerState | None, request: AppendRequest
) -> AppendPlan:
    """Check one append against the stream's and producer's state (order: module docstring).

    Raises
    ------
    ProtocolError
        The refusal, with its protocol headers.
    """
    p = request.producer
    if p is not None and producer is not None:
        if p.epoch < producer.epoch:
            raise ProtocolError(
                403,
                "stale_producer_epoch",
                f"producer {p.id!r} is at epoch {producer.epoch}; epoch {p.epoch} is fenced "
                "(another instance took over). Restart with a higher epoch.",
                {PRODUCER_EPOCH: str(producer.epoch)},
            )
        if p.epoch == producer.epoch and p.seq <= producer.last_seq:
            return AppendPlan(Action.DUPLICATE, producer=producer)
    if stream.closed:
        if request.close and not request.body:
            return AppendPlan(Action.ALREADY_CLOSED, producer=producer)
        raise closed_conflict(Offset(stream.tail))
    if not request.body and not request.close:
        raise ProtocolError(
            400,
            "empty_append",
            "an append needs a body; to close the stream without data send "
            "Stream-Closed: true with an empty body",
        )
    chunk, count = b"", 0
    if request.body:
        if request.content_type is None:
            raise ProtocolError(
                400,
                "invalid_header",
                f"an append needs a Content-Type ({stream.content_type}, the stream's type)",
            )
        if media_type(request.content_type) != media_type(stream.content_type):
            raise ProtocolError(
                409,
                "content_type_mismatch",
                f"this stream holds {stream.content_type}; the append is {request.content_type}",
            )
        chunk, count = encode_body(stream.content_type, request.body, allow_empty=False)
    after = producer
    if p is not None:
        after = _next_producer_state(producer, p.epoch, p.seq)
    if request.stream_seq is not None and stream.last_stream_seq is not None:
        if request.stream_seq.encode("latin-1") <= stream.last_stream_seq.encode("latin-1"):
            raise ProtocolError(
                409,
                "stream_seq_conflict",
                f"Stream-Seq {request.stream_seq!r} is not greater than the last one "
                f"({stream.last_stream_seq!r}); sequence values compare byte by byte",
            )
    return AppendPlan(Action.APPEND, chunk, count, after)


def _next_producer_state(state: ProducerState | None, epoch: int, seq: int) -> ProducerState:
    if state is None or epoch > state.epoch:
        if seq != 0:
            if state is None:
                raise _gap(0, seq)
            raise ProtocolError(
                400,
                "producer_epoch_seq",
                f"a new producer epoch ({epoch}) must start at Producer-Seq 0, got {seq}",
            )
        return ProducerState(epoch, 0)
    if seq != state.last_seq + 1:
        raise _gap(state.last_seq + 1, seq)
    return ProducerState(epoch, seq)


def _gap(expected: int, received: int) -> ProtocolError:
    return ProtocolError(
        409,
        "producer_seq_gap",
        f"Producer-Seq {received} skips ahead: this producer's next seq is {expected} "
        "(resend the missing batches first)",
        {PRODUCER_EXPECTED_SEQ: str(expected), PRODUCER_RECEIVED_SEQ: str(received)},
    )


# --- PUT on an existing stream ----------------------------------------------------------


def create_config(request: CreateRequest) -> dict[str, Any]:
    """The part of a ``PUT`` an idempotent re-``PUT`` must repeat (§5.1, §4.2).

    TTL and expiry are kept as requested (a fork that inherited its source's
    TTL still matches a repeated ``PUT`` without one).
    """
    fork_offset = request.fork_offset
    if isinstance(fork_offset, Offset):
        offset_text: str | None = fork_offset.text
    else:
        offset_text = None if fork_offset is None else fork_offset.value
    return {
        "ttl_s": request.ttl_s,
        "expires_at": None if request.expires_at is None else request.expires_at[1],
        "forked_from": request.forked_from,
        "fork_offset": offset_text,
        "fork_sub_offset": request.fork_sub_offset,
    }


def config_matches(
    stored: dict[str, Any], content_type: str, closed: bool, request: CreateRequest
) -> bool:
    """Whether a ``PUT`` repeats an existing stream's configuration (200) or not (409).

    Compared: media type (an omitted Content-Type means the default, or for
    a fork the inherited type), closure status (§5.1 "Closure status
    matching"), TTL/expiry and fork parameters as requested.
    """
    wanted = request.content_type
    if wanted is None and request.forked_from is None:
        wanted = DEFAULT_CONTENT_TYPE
    if wanted is not None and media_type(wanted) != media_type(content_type):
        return False
    if request.closed != closed:
        return False
    return create_config(request) == stored
