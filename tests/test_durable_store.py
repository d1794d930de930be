"""The Durable Streams stores: forks, TTL, producers, waiting, on both backends.

Tests that take ``make_store`` (or ``store``) run once per ledger backend (see
``conftest.py``): :class:`SQLiteStreamStore` (a real SQLite file, the ledger's, or
memory) and :class:`PgStreamStore` (a schema of the session's PostgreSQL). The
PostgreSQL store is shared by processes: two stores on one database stand for two
workers.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import streamnb as sn
from streamnb._ledger.pg_connect import Dsn
from streamnb.demo import output_only_handler
from streamnb.server.durable import (
    NOW,
    START,
    AppendRequest,
    CreateRequest,
    Offset,
    PgStreamStore,
    Producer,
    SQLiteStreamStore,
    StreamStore,
)
from streamnb.server.durable.errors import ProtocolError
from streamnb.testing import FakeTokenSource

pytestmark = pytest.mark.timeout(60)

MB = 1 << 20
TEXT = "text/plain"
JSON = "application/json"


class Clock:
    """A settable clock for TTL and expiry (seconds)."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def text(store: StreamStore, key: str, start: Offset | object = START) -> str:
    result = await store.read(key, start, max_bytes=MB)  # type: ignore[arg-type]
    return b"".join(result.chunks).decode()


async def append(store: StreamStore, key: str, data: str, **kw: object) -> Offset:
    result = await store.append(key, AppendRequest(TEXT, data.encode(), **kw))  # type: ignore[arg-type]
    return result.tail


MakeStore = Callable[..., StreamStore]


@pytest.fixture
async def make_store(backend: str, ledger_target: str) -> AsyncIterator[Callable[..., StreamStore]]:
    """``make_store(clock=None, durable=False)``: a store of ``backend``, closed at teardown.

    SQLite: in memory unless ``durable`` (then the test's ledger file); PostgreSQL:
    the test's schema (every store of a test shares it, as workers do).
    """
    made: list[StreamStore] = []

    def make(clock: Callable[[], float] | None = None, durable: bool = False) -> StreamStore:
        options: dict[str, Any] = {} if clock is None else {"clock": clock}
        store: StreamStore
        if backend == "postgres":
            store = PgStreamStore(Dsn(ledger_target), **options)
        else:
            store = SQLiteStreamStore(ledger_target if durable else None, **options)
        made.append(store)
        return store

    try:
        yield make
    finally:
        for store in made:
            await store.aclose()


def count_rows(backend: str, ledger_target: str, query: str, params: tuple[Any, ...] = ()) -> int:
    """One ``count(*)`` straight from the database (``?`` placeholders)."""
    if backend == "postgres":
        import psycopg

        with psycopg.connect(ledger_target) as pg:
            row = pg.execute(query.replace("?", "%s"), params).fetchone()
    else:
        with sqlite3.connect(ledger_target) as conn:
            row = conn.execute(query, params).fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
async def store(make_store: MakeStore) -> StreamStore:
    return make_store()


async def test_streams_live_in_the_ledger_and_survive_a_restart(
    ledger_target: str, make_store: MakeStore
) -> None:
    ledger = sn.Ledger(ledger_target)
    try:
        store = make_store(durable=True)
        await store.create("chat/1", CreateRequest(TEXT, body=b"hello "))
        await append(store, "chat/1", "world", close=True)
        await store.aclose()

        reopened = make_store(durable=True)
        try:
            assert await text(reopened, "chat/1") == "hello world"
            meta = await reopened.head("chat/1")
            assert meta.closed and meta.tail == Offset(11)
        finally:
            await reopened.aclose()
        # the streams are in the ledger's own file, queryable from the ledger
        rows = ledger.sql("SELECT path, closed, tail FROM ds_streams").to_dict("records")
        assert rows == [{"path": "chat/1", "closed": 1, "tail": 11}]
    finally:
        ledger.close()


async def test_runtime_settlements_and_appends_share_the_database(
    ledger_target: str, make_store: MakeStore
) -> None:
    """The ledger's writer thread and the store's thread write one database without locking
    each other out."""
    ledger = sn.Ledger(ledger_target)
    runtime = sn.StreamRuntime(ledger)
    runtime.register(output_only_handler(source=FakeTokenSource()))
    store = make_store(durable=True)
    try:
        await store.create("log", CreateRequest(TEXT))

        async def writer() -> None:
            for i in range(200):
                await append(store, "log", f"{i};")

        async def streams() -> None:
            for _ in range(20):
                session = await runtime.attach("tutorial.output_only", {"message": "hi"})
                await session.wait(timeout_s=10)

        await asyncio.gather(writer(), streams())
        assert (await text(store, "log")).split(";")[:-1] == [str(i) for i in range(200)]
        assert len(ledger.streams(status="completed")) == 20
    finally:
        await runtime.aclose()
        ledger.close()


async def test_offsets_are_byte_positions_and_reads_page_by_size(store: StreamStore) -> None:
    await store.create("s", CreateRequest(TEXT))
    tails = [await append(store, "s", chunk) for chunk in ("ab", "cde", "f")]
    assert tails == [Offset(2), Offset(5), Offset(6)]
    assert [t.text for t in tails] == sorted(t.text for t in tails)
    page = await store.read("s", START, max_bytes=3)
    assert page.chunks == (b"ab",) and page.next_offset == Offset(2) and not page.up_to_date
    page = await store.read("s", page.next_offset, max_bytes=3)
    assert page.chunks == (b"cde",) and page.next_offset == Offset(5)
    assert await text(store, "s", Offset(3)) == "def"  # a byte offset inside an append
    tail = await store.read("s", NOW, max_bytes=MB)
    assert tail.chunks == () and tail.next_offset == Offset(6) and tail.up_to_date
    with pytest.raises(ProtocolError) as past:
        await store.read("s", Offset(7), max_bytes=MB)
    assert past.value.status == 400


async def test_json_batches_are_one_append_and_cannot_be_split(store: StreamStore) -> None:
    await store.create("j", CreateRequest(JSON, body=b'[{"a": 1}, {"b": 2}]'))
    result = await store.read("j", START, max_bytes=MB)
    assert result.chunks == (b'{"a":1},{"b":2}',)
    with pytest.raises(ProtocolError) as inside:
        await store.read("j", Offset(3), max_bytes=MB)
    assert (inside.value.status, inside.value.type) == (400, "invalid_offset")
    for bad, code in ((b"[]", "empty_json_array"), (b"{oops", "malformed_json")):
        with pytest.raises(ProtocolError) as refused:
            await store.append("j", AppendRequest(JSON, bad))
        assert refused.value.type == code
    assert (await store.read("j", START, max_bytes=MB)).chunks == (b'{"a":1},{"b":2}',)


async def test_close_is_atomic_with_the_final_append_and_idempotent(
    store: StreamStore,
) -> None:
    await store.create("c", CreateRequest(TEXT, body=b"a"))
    closed = await store.append("c", AppendRequest(TEXT, b"z", close=True))
    assert closed.closed and closed.tail == Offset(2)
    again = await store.append("c", AppendRequest(None, b"", close=True))
    assert again.closed and again.tail == Offset(2)
    with pytest.raises(ProtocolError) as refused:
        await append(store, "c", "more")
    assert refused.value.status == 409
    assert refused.value.headers == {"Stream-Closed": "true", "Stream-Next-Offset": Offset(2).text}
    result = await store.read("c", START, max_bytes=MB)
    assert result.closed and result.chunks == (b"a", b"z")


async def test_put_is_idempotent_only_with_the_same_configuration(
    store: StreamStore,
) -> None:
    first = await store.create("p", CreateRequest(TEXT, ttl_s=60))
    again = await store.create("p", CreateRequest("TEXT/PLAIN", ttl_s=60))
    assert first.created and not again.created
    for other in (
        CreateRequest(JSON, ttl_s=60),
        CreateRequest(TEXT, ttl_s=61),
        CreateRequest(TEXT),
        CreateRequest(TEXT, ttl_s=60, closed=True),
    ):
        with pytest.raises(ProtocolError) as refused:
            await store.create("p", other)
        assert (refused.value.status, refused.value.type) == (409, "stream_exists")


async def test_sliding_ttl_is_renewed_by_reads_and_writes_not_by_head(
    make_store: MakeStore,
) -> None:
    clock = Clock()
    store = make_store(clock=clock)
    if True:
        await store.create("t", CreateRequest(TEXT, ttl_s=10))
        clock.now += 8
        await store.read("t", NOW, max_bytes=MB)  # a read renews
        clock.now += 8
        await append(store, "t", "x")  # a write renews
        clock.now += 8
        await store.append("t", AppendRequest(None, b"", close=True))  # so does a close
        clock.now += 8
        await store.head("t")  # HEAD does not
        clock.now += 3
        with pytest.raises(ProtocolError) as expired:
            await store.head("t")
        assert expired.value.status == 404
        # the path is free again
        assert (await store.create("t", CreateRequest(JSON))).created


async def test_expires_at_is_absolute(make_store: MakeStore) -> None:
    clock = Clock()
    store = make_store(clock=clock)
    if True:
        when = ("2030-01-01T00:00:00Z", clock.now + 5)
        await store.create("e", CreateRequest(TEXT, expires_at=when))
        clock.now += 4
        await store.read("e", START, max_bytes=MB)
        clock.now += 1
        with pytest.raises(ProtocolError) as expired:
            await store.read("e", START, max_bytes=MB)
        assert expired.value.status == 404


async def test_forks_read_their_source_without_copying_it(
    backend: str, ledger_target: str, make_store: MakeStore
) -> None:
    store = make_store(durable=True)
    await _forks(store)
    await store.aclose()
    # each append is stored once: forks point at it
    query = "SELECT count(*) FROM ds_messages WHERE data=?"
    assert count_rows(backend, ledger_target, query, (b"hello",)) == 1


async def _forks(store: StreamStore) -> None:
    await store.create("src", CreateRequest(TEXT, body=b"hello"))
    mid = await append(store, "src", " world")
    await store.create("f1", CreateRequest(None, forked_from="src", fork_offset=Offset(5)))
    await store.create("f2", CreateRequest(None, forked_from="src"))  # at the tail
    await append(store, "src", "!")
    await append(store, "f1", " there")
    assert await text(store, "f1") == "hello there"
    assert await text(store, "f2") == "hello world"
    assert await text(store, "src") == "hello world!"
    assert mid == Offset(11)
    # the fork's offsets continue the source's offset space
    assert await text(store, "f1", Offset(5)) == " there"


async def test_sub_offsets_cut_bytes_and_copy_json_messages(store: StreamStore) -> None:
    await store.create("b", CreateRequest(TEXT, body=b"abcdef"))
    await store.create(
        "b1", CreateRequest(None, forked_from="b", fork_offset=Offset(0), fork_sub_offset=4)
    )
    await store.create(
        "b2", CreateRequest(None, forked_from="b1", fork_offset=Offset(0), fork_sub_offset=2)
    )
    await append(store, "b2", "Z")
    assert (await text(store, "b1"), await text(store, "b2")) == ("abcd", "abZ")
    with pytest.raises(ProtocolError) as too_far:
        await store.create(
            "b3", CreateRequest(None, forked_from="b", fork_offset=Offset(0), fork_sub_offset=7)
        )
    assert too_far.value.status == 400

    await store.create("j", CreateRequest(JSON, body=b"[1, 2, 3]"))
    await store.create(
        "j1", CreateRequest(None, forked_from="j", fork_offset=START, fork_sub_offset=2)
    )
    assert (await store.read("j1", START, max_bytes=MB)).chunks == (b"1,2",)
    with pytest.raises(ProtocolError):
        await store.create(
            "j2", CreateRequest(None, forked_from="j", fork_offset=START, fork_sub_offset=4)
        )


async def test_deleting_a_forked_source_soft_deletes_it_until_its_forks_go(
    backend: str, ledger_target: str, make_store: MakeStore
) -> None:
    store = make_store(durable=True)
    await _soft_delete(store)
    await store.aclose()
    # the whole chain was collected
    assert count_rows(backend, ledger_target, "SELECT count(*) FROM ds_messages") == 0
    assert count_rows(backend, ledger_target, "SELECT count(*) FROM ds_streams") == 0


async def _soft_delete(store: StreamStore) -> None:
    await store.create("a", CreateRequest(TEXT, body=b"A"))
    await store.create("b", CreateRequest(None, forked_from="a"))
    await store.create("c", CreateRequest(None, forked_from="b"))
    await store.delete("a")
    await store.delete("b")
    for key in ("a", "b"):
        with pytest.raises(ProtocolError) as gone:
            await store.head(key)
        assert gone.value.status == 410
    with pytest.raises(ProtocolError) as blocked:
        await store.create("a", CreateRequest(TEXT))
    assert blocked.value.status == 409
    assert await text(store, "c") == "A"
    await store.delete("c")  # the last fork: the chain is collected
    for key in ("a", "b", "c"):
        with pytest.raises(ProtocolError) as missing:
            await store.head(key)
        assert missing.value.status == 404


async def test_an_expired_fork_releases_its_soft_deleted_source(make_store: MakeStore) -> None:
    clock = Clock()
    store = make_store(clock=clock)
    if True:
        await store.create("src", CreateRequest(TEXT, body=b"x"))
        await store.create("fork", CreateRequest(None, forked_from="src", ttl_s=1))
        await store.delete("src")  # soft: the fork still reads it
        clock.now += 60  # the fork expires; nobody touches it; a sweep finds it
        await store.create("other", CreateRequest(TEXT))
        assert (await store.create("src", CreateRequest(TEXT))).created


async def test_producer_retries_are_deduplicated_and_zombies_fenced(
    store: StreamStore,
) -> None:
    await store.create("p", CreateRequest(TEXT))
    ok = await store.append("p", AppendRequest(TEXT, b"a", producer=Producer("w", 0, 0)))
    dup = await store.append("p", AppendRequest(TEXT, b"a", producer=Producer("w", 0, 0)))
    assert (ok.duplicate, dup.duplicate, dup.producer_seq) == (False, True, 0)
    with pytest.raises(ProtocolError) as gap:
        await store.append("p", AppendRequest(TEXT, b"c", producer=Producer("w", 0, 2)))
    assert gap.value.status == 409
    assert gap.value.headers == {"Producer-Expected-Seq": "1", "Producer-Received-Seq": "2"}
    await store.append("p", AppendRequest(TEXT, b"b", producer=Producer("w", 1, 0)))
    with pytest.raises(ProtocolError) as stale:
        await store.append("p", AppendRequest(TEXT, b"z", producer=Producer("w", 0, 1)))
    assert (stale.value.status, stale.value.headers) == (403, {"Producer-Epoch": "1"})
    assert await text(store, "p") == "ab"


@st.composite
def producer_requests(draw: st.DrawFn) -> list[tuple[int, int]]:
    """A producer's (epoch, seq) requests: in order, retried, reordered, skipping, restarting."""
    requests: list[tuple[int, int]] = []
    epoch, seq = 0, 0
    for _ in range(draw(st.integers(1, 25))):
        move = draw(st.sampled_from(["next", "next", "retry", "old", "skip", "restart"]))
        if move == "next" or not requests:
            requests.append((epoch, seq))
            seq += 1
        elif move == "retry":
            requests.append(requests[-1])
        elif move == "old":
            requests.append(draw(st.sampled_from(requests)))
        elif move == "skip":
            requests.append((epoch, seq + draw(st.integers(1, 3))))
        else:
            epoch, seq = epoch + 1, 0
    return requests


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(requests=producer_requests())
def test_a_producers_data_is_stored_exactly_once_in_order(
    requests: list[tuple[int, int]], backend: str, ledger_target: str
) -> None:
    """Whatever a producer retries or reorders, each accepted (epoch, seq) is stored once."""
    producer_target = ledger_target if backend == "postgres" else None

    async def scenario() -> tuple[list[str], list[str]]:
        store: StreamStore = (
            SQLiteStreamStore() if producer_target is None else PgStreamStore(Dsn(producer_target))
        )
        key = f"p{uuid.uuid4().hex}"  # a new stream per example (a PostgreSQL schema is shared)
        try:
            await store.create(key, CreateRequest(TEXT))
            model: list[str] = []
            state: tuple[int, int] | None = None  # (epoch, last seq): the protocol's model
            for epoch, seq in requests:
                chunk = f"{epoch}.{seq};"
                try:
                    result = await store.append(
                        key, AppendRequest(TEXT, chunk.encode(), producer=Producer("w", epoch, seq))
                    )
                except ProtocolError:
                    result = None
                accept = (state is None and seq == 0) or (
                    state is not None
                    and (
                        (epoch > state[0] and seq == 0)
                        or (epoch == state[0] and seq == state[1] + 1)
                    )
                )
                if accept:
                    model.append(chunk)
                    state = (epoch, seq)
                assert (result is not None and not result.duplicate) == accept
            return (await text(store, key)).split(";")[:-1], [c[:-1] for c in model]
        finally:
            await store.aclose()

    stored, expected = asyncio.run(scenario())
    assert stored == expected


async def test_concurrent_appends_all_land_with_distinct_increasing_offsets(
    store: StreamStore,
) -> None:
    await store.create("c", CreateRequest(TEXT))
    tails = await asyncio.gather(*(append(store, "c", f"<{i}>") for i in range(50)))
    assert len(set(tails)) == 50
    data = await text(store, "c")
    assert sorted(data.split(">")[:-1]) == sorted(f"<{i}" for i in range(50))
    assert max(tails) == Offset(len(data))


async def test_wait_wakes_on_append_close_and_delete_and_times_out(
    store: StreamStore,
) -> None:
    await store.create("w", CreateRequest(TEXT))
    loop = asyncio.get_running_loop()
    start = loop.time()
    await store.wait("w", Offset(0), 0.2)  # nothing happens: it times out
    assert loop.time() - start >= 0.15
    for action in (
        lambda: append(store, "w", "x"),
        lambda: store.append("w", AppendRequest(None, b"", close=True)),
    ):
        tail = (await store.head("w")).tail
        waiter = asyncio.create_task(store.wait("w", tail, 30))
        await asyncio.sleep(0.05)
        assert not waiter.done()
        await action()
        await asyncio.wait_for(waiter, 5)
    await store.wait("w", Offset(1), 30)  # closed: returns at once
    await store.create("d", CreateRequest(TEXT))
    waiter = asyncio.create_task(store.wait("d", Offset(0), 30))
    await asyncio.sleep(0.05)
    await store.delete("d")
    await asyncio.wait_for(waiter, 5)


async def test_a_closed_store_refuses_with_503_and_releases_waiters(make_store: MakeStore) -> None:
    store = make_store()
    await store.create("w", CreateRequest(TEXT))
    waiter = asyncio.create_task(store.wait("w", Offset(0), 30))
    await asyncio.sleep(0.05)
    await store.aclose()
    await asyncio.wait_for(waiter, 5)
    with pytest.raises(ProtocolError) as closed:
        await store.head("w")
    assert closed.value.status == 503
    await store.aclose()  # idempotent


async def test_two_postgres_stores_are_one_store_for_two_workers(pg_dsn: str) -> None:
    """Stores on one PostgreSQL database (two workers): appends from both land once each,
    in one order, and a reader waiting on one is woken by an append made through the other
    (NOTIFY)."""
    a, b = PgStreamStore(Dsn(pg_dsn)), PgStreamStore(Dsn(pg_dsn))
    try:
        await a.create("shared", CreateRequest(TEXT))
        assert not (await b.create("shared", CreateRequest(TEXT))).created  # the same stream
        tails = await asyncio.gather(
            *(append(a if i % 2 else b, "shared", f"<{i}>") for i in range(40))
        )
        assert len(set(tails)) == 40  # colliding transactions were run again, not lost
        data = await text(b, "shared")
        assert sorted(data.split(">")[:-1]) == sorted(f"<{i}" for i in range(40))
        tail = (await b.head("shared")).tail
        waiter = asyncio.create_task(b.wait("shared", tail, 30))
        await asyncio.sleep(0.1)
        assert not waiter.done()
        await append(a, "shared", "!")
        await asyncio.wait_for(waiter, 5)
        assert (await text(b, "shared", tail)) == "!"
        # producers are deduplicated across workers too
        first = await a.append("shared", AppendRequest(TEXT, b"p", producer=Producer("w", 0, 0)))
        retry = await b.append("shared", AppendRequest(TEXT, b"p", producer=Producer("w", 0, 0)))
        assert (first.duplicate, retry.duplicate) == (False, True)
    finally:
        await a.aclose()
        await b.aclose()


def test_a_store_file_that_is_not_sqlite_raises(tmp_path: Path) -> None:
    bad = tmp_path / "not.db"
    bad.write_text("this is not a database" * 100)
    with pytest.raises(sqlite3.DatabaseError):
        SQLiteStreamStore(str(bad))


async def test_reads_do_not_need_the_write_lock_the_ledger_may_hold(tmp_path: Path) -> None:
    """A stream without TTL is read while another connection (the ledger) writes the file."""
    path = str(tmp_path / "ledger.db")
    store = SQLiteStreamStore(path, busy_timeout_s=0.1)
    try:
        await store.create("s", CreateRequest(TEXT, body=b"data"))
        await store.create("t", CreateRequest(TEXT, body=b"data", ttl_s=60))
        writer = sqlite3.connect(path, isolation_level=None)
        writer.execute("BEGIN IMMEDIATE")  # holds the write lock, as a ledger commit would
        try:
            assert await text(store, "s") == "data"
            assert (await store.head("s")).tail == Offset(4)
            with pytest.raises(ProtocolError) as busy:
                await text(store, "t")  # renewing a TTL is a write: it waits for the lock
            assert (busy.value.status, busy.value.headers) == (503, {"Retry-After": "1"})
            assert "locked" in busy.value.message
        finally:
            writer.execute("ROLLBACK")
            writer.close()
        assert await text(store, "t") == "data"
    finally:
        await store.aclose()
