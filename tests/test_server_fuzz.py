"""Hypothesis-generated HTTP requests against the app on uvicorn (127.0.0.1).

The app exposes no OpenAPI schema for schemathesis, so requests are generated
here: a method, a path from the app's routes with random or real refs, and a
body that is random JSON or random bytes. Whatever arrives: no 5xx, every 4xx is
the JSON error shape, and a refused request opens no stream.

The hostile inputs of issue 15 are generated too: text with lone surrogates
(JSON escapes of half an emoji), requests as a page of another site sends them
(a foreign ``Host``, ``Origin``, ``text/plain`` and form bodies, no content type),
random ``?token=`` values (non-Latin-1 ones gave 500), the rooms endpoints with
random names, and the rooms' internal reply kind on ``POST /streams``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import streamnb as sn
from streamnb.rooms import ChatRooms
from streamnb.server import ServerHandle
from tests._server_util import open_stream

pytest_plugins = ["tests._server"]

PATHS = [
    "/rooms",
    "/rooms/{ref}",
    "/rooms/{ref}/messages",
    "/rooms/{ref}/clear",
    "/streams",
    "/streams/{ref}",
    "/streams/{ref}/input",
    "/streams/{ref}/cancel",
    "/streams/{ref}/events?after_seq={text}",
    "/chat",
    "/api/chat",
    "/api/chat/{ref}/stop",
    "/api/chat/{ref}/stream",
    "/ledger/events?limit={text}",
    "/ledger/streams?kind={text}",
]
KINDS = ["tutorial.output_only", "tutorial.streaming_chatbot", "nope", "", "streamnb.rooms.reply"]
#: any code point, lone surrogates and control characters included
hostile_text = st.text(alphabet=st.characters(exclude_categories=()), max_size=30)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | hostile_text,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
# bodies shaped like the real ones (so the validators past the JSON parser are reached)
shaped = st.fixed_dictionaries(
    {},
    optional={
        "kind": st.sampled_from(KINDS) | json_values,
        "payload": json_values,
        "message": json_values,
        "reason": json_values,
        "messages": json_values,
        "id": json_values,
        "seq": json_values,
        "name": json_values,
        "text": json_values,
    },
)
bodies = st.one_of(
    shaped.map(lambda d: json.dumps(d).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
)


#: (content type, Host, Origin) a request may carry; None: the header is left out
CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "text/plain;charset=UTF-8",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    None,
]
HOSTS = [None, "evil.example", "localhost", "[::1]:80", "127.0.0.1.evil.example", "xn--9ca.example"]
ORIGINS = [None, "http://evil.example", "null", "SELF", "http://localhost:1"]


@pytest.fixture
async def fuzz_server(
    start_server, server_runtime: sn.StreamRuntime
) -> AsyncIterator[ServerHandle]:
    rooms = ChatRooms(runtime=server_runtime)
    handle: ServerHandle = await start_server(max_body_bytes=4000, rooms=rooms)
    try:
        yield handle
    finally:
        await handle.aclose()
        await rooms.aclose()


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE"]),
    path=st.sampled_from(PATHS),
    ref=st.one_of(st.just("SETTLED"), st.text(min_size=1, max_size=20)),
    text=st.text(max_size=12),
    body=bodies,
    content_type=st.sampled_from(CONTENT_TYPES),
    host=st.sampled_from(HOSTS),
    origin=st.sampled_from(ORIGINS),
)
async def test_generated_requests_never_500_and_refusals_change_nothing(
    fuzz_server: ServerHandle,
    server_runtime: sn.StreamRuntime,
    method: str,
    path: str,
    ref: str,
    text: str,
    body: bytes,
    content_type: str | None,
    host: str | None,
    origin: str | None,
) -> None:
    async with httpx.AsyncClient(base_url=fuzz_server.url, timeout=30) as client:
        if ref == "SETTLED":
            ref = await open_stream(client, "tutorial.output_only")
            await server_runtime.wait(ref, timeout_s=10)
        url = path.format(ref=quote(ref, safe=""), text=quote(text, safe=""))
        streams_before = len(server_runtime.ledger.streams())
        headers: dict[str, str] = {}
        kwargs: dict[str, Any] = {"headers": headers}
        if method != "GET":
            kwargs["content"] = body
            if content_type is not None:
                headers["content-type"] = content_type
        if host is not None:
            headers["host"] = host
        if origin is not None:
            headers["origin"] = fuzz_server.url if origin == "SELF" else origin
        response = await client.request(method, url, **kwargs)
        assert response.status_code < 500, (method, url, body, headers, response.text)
        if response.status_code >= 400:
            assert response.headers["content-type"] == "application/json"
            error = response.json()["error"]
            assert isinstance(error["type"], str) and error["type"]
            assert isinstance(error["message"], str) and error["message"]
            assert len(server_runtime.ledger.streams()) == streams_before
        foreign = (host is not None and host not in ("localhost", "[::1]:80")) or (
            origin not in (None, "SELF") and method in ("POST", "PUT", "PATCH", "DELETE")
        )
        if foreign:  # a page of another site gets nothing, changes nothing
            assert response.status_code == 403, (method, url, headers, response.text)
        kinds = server_runtime.ledger.streams().kind.tolist()
        assert "streamnb.rooms.reply" not in kinds[streams_before:] or path.startswith("/rooms")


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(token=hostile_text, where=st.sampled_from(["query", "header"]))
async def test_generated_tokens_are_401_never_500(
    secured_server: ServerHandle, token: str, where: str
) -> None:
    async with httpx.AsyncClient(base_url=secured_server.url, timeout=30) as client:
        if where == "query":
            # percent-encoded by hand: httpx cannot encode a lone surrogate, but a client
            # can send its bytes (invalid UTF-8 once decoded)
            raw = quote(token.encode("utf-8", "surrogatepass"), safe="")
            response = await client.get(f"/ledger/streams?token={raw}")
        else:
            value = "Bearer " + token.encode("utf-8", "surrogatepass").decode("latin-1")
            try:
                response = await client.get("/ledger/streams", headers={"authorization": value})
            except (ValueError, httpx.LocalProtocolError):  # httpx refuses CR/LF in headers
                return
        if where == "header" and response.status_code == 400:
            return  # a control character in a header: uvicorn's HTTP parser refused it
        assert response.status_code == 401, (token, response.text)
        assert response.json()["error"]["type"] == "unauthorized"


@pytest.fixture
async def secured_server(start_server) -> ServerHandle:
    handle: ServerHandle = await start_server(token="fuzz-token")
    return handle
