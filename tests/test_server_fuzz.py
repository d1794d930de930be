"""Hypothesis-generated HTTP requests against the app on uvicorn (127.0.0.1).

The app exposes no OpenAPI schema for schemathesis, so requests are generated
here: a method, a path from the app's routes with random or real refs, and a
body that is random JSON or random bytes. Whatever arrives: no 5xx, every 4xx is
the JSON error shape, and a refused request opens no stream.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import streamnb as sn
from streamnb.server import ServerHandle
from tests._server_util import open_stream

pytest_plugins = ["tests._server"]

PATHS = [
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
KINDS = ["tutorial.output_only", "tutorial.streaming_chatbot", "nope", ""]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
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
    },
)
bodies = st.one_of(
    shaped.map(lambda d: json.dumps(d).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
)


@pytest.fixture
async def fuzz_server(start_server) -> ServerHandle:
    handle: ServerHandle = await start_server(max_body_bytes=4000)
    return handle


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
)
async def test_generated_requests_never_500_and_refusals_change_nothing(
    fuzz_server: ServerHandle,
    server_runtime: sn.StreamRuntime,
    method: str,
    path: str,
    ref: str,
    text: str,
    body: bytes,
) -> None:
    async with httpx.AsyncClient(base_url=fuzz_server.url, timeout=30) as client:
        if ref == "SETTLED":
            ref = await open_stream(client, "tutorial.output_only")
            await server_runtime.wait(ref, timeout_s=10)
        url = path.format(ref=quote(ref, safe=""), text=quote(text, safe=""))
        streams_before = len(server_runtime.ledger.streams())
        kwargs: dict[str, Any] = {}
        if method != "GET":
            kwargs = {"content": body, "headers": {"content-type": "application/json"}}
        response = await client.request(method, url, **kwargs)
        assert response.status_code < 500, (method, url, body, response.text)
        if response.status_code >= 400:
            assert response.headers["content-type"] == "application/json"
            error = response.json()["error"]
            assert isinstance(error["type"], str) and error["type"]
            assert isinstance(error["message"], str) and error["message"]
            assert len(server_runtime.ledger.streams()) == streams_before
