"""Bad input gets a 4xx JSON error and changes nothing in the runtime or the ledger."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

import streamnb as sn
from streamnb.server import ServerHandle
from streamnb.server.errors import status_for
from tests._server_util import open_stream

pytest_plugins = ["tests._server"]

pytestmark = pytest.mark.timeout(30)

USER = [{"id": "u1", "role": "user", "parts": [{"type": "text", "text": "hi"}]}]
JSON = {"content-type": "application/json"}
FORM = {"content-type": "application/x-www-form-urlencoded"}

# (method, path, request kwargs, status, error type); {settled} is a settled output_only stream
CASES: list[tuple[str, str, dict[str, Any], int, str]] = [
    ("POST", "/streams", {"content": b"{", "headers": JSON}, 400, "malformed_json"),
    ("POST", "/streams", {"content": b"", "headers": JSON}, 400, "malformed_json"),
    (
        "POST",
        "/streams",
        {"content": b'{"kind": "tutorial.output_only", "payload": NaN}', "headers": JSON},
        400,
        "malformed_json",
    ),
    ("POST", "/streams", {"content": b"\xff\xfe{", "headers": JSON}, 400, "malformed_json"),
    ("POST", "/streams", {"json": []}, 422, "invalid_request"),
    ("POST", "/streams", {"json": {"kind": 5}}, 422, "invalid_request"),
    ("POST", "/streams", {"json": {"payload": {}}}, 422, "invalid_request"),
    (
        "POST",
        "/streams",
        {"json": {"kind": "tutorial.output_only", "extra": 1}},
        422,
        "invalid_request",
    ),
    ("POST", "/streams", {"json": {"kind": "no.such.kind"}}, 404, "unknown_kind"),
    ("POST", "/streams", {"json": {"kind": "test.strict", "payload": {}}}, 422, "start_rejected"),
    (
        "POST",
        "/streams",
        {"json": {"kind": "tutorial.output_only", "payload": "x" * 3000}},
        413,
        "body_too_large",
    ),
    ("GET", "/streams/st_nope/events", {}, 404, "unknown_stream"),
    ("GET", "/streams/st_nope/events", {"params": {"after_seq": "abc"}}, 400, "invalid_request"),
    ("GET", "/streams/st_nope/events", {"params": {"after_seq": "-2"}}, 400, "invalid_request"),
    ("GET", "/streams/st_nope/events", {"headers": {"Last-Event-ID": "x"}}, 400, "invalid_request"),
    ("GET", "/streams/st_nope", {}, 404, "unknown_stream"),
    ("POST", "/streams/st_nope/input", {"json": {"payload": 1}}, 404, "unknown_stream"),
    ("POST", "/streams/st_nope/cancel", {}, 404, "unknown_stream"),
    ("POST", "/streams/{settled}/input", {"json": {"payload": 1}}, 409, "input_not_accepted"),
    ("POST", "/streams/{settled}/input", {"json": {"seq": 1}}, 422, "invalid_request"),
    (
        "POST",
        "/streams/{settled}/input",
        {"json": {"payload": 1, "seq": -1}},
        422,
        "invalid_request",
    ),
    (
        "POST",
        "/streams/{settled}/input",
        {"json": {"payload": 1, "seq": True}},
        422,
        "invalid_request",
    ),
    ("POST", "/streams/{settled}/cancel", {"json": [1]}, 422, "invalid_request"),
    ("POST", "/streams/{settled}/cancel", {"json": {"reason": 3}}, 422, "invalid_request"),
    ("POST", "/chat", {"json": {"message": 5}}, 422, "invalid_request"),
    ("POST", "/chat", {"json": {}}, 422, "invalid_request"),
    ("POST", "/chat", {"content": b"hello", "headers": JSON}, 400, "malformed_json"),
    ("POST", "/api/chat", {"json": {"id": "c1", "messages": []}}, 422, "invalid_request"),
    ("POST", "/api/chat", {"json": {"messages": USER}}, 422, "invalid_request"),
    (
        "POST",
        "/api/chat",
        {"json": {"id": "c1", "messages": [{"role": "assistant", "parts": []}]}},
        422,
        "invalid_request",
    ),
    (
        "POST",
        "/api/chat",
        {"json": {"id": "c1", "messages": [{"role": "user", "parts": []}]}},
        422,
        "invalid_request",
    ),
    (
        "POST",
        "/api/chat",
        {"json": {"id": "c1", "messages": USER, "trigger": 1}},
        422,
        "invalid_request",
    ),
    ("POST", "/api/chat/nope/stop", {}, 404, "unknown_chat"),
    ("GET", "/ledger/events", {"params": {"limit": "-1"}}, 422, "invalid_request"),
    ("GET", "/ledger/events", {"params": {"bogus": "1"}}, 422, "invalid_request"),
    ("GET", "/ledger/streams", {"params": {"kind": ""}}, 422, "invalid_request"),
    ("GET", "/no/such/route", {}, 404, "not_found"),
    ("DELETE", "/streams", {}, 405, "method_not_allowed"),
    # a page of another site (issue 15): bodies must be JSON, Host and Origin must be ours
    *[
        ("POST", path, {"content": body, "headers": headers}, 415, "unsupported_media_type")
        for path, body, headers in [
            ("/streams", b'{"kind": "tutorial.output_only"}', {"content-type": "text/plain"}),
            ("/streams", b'{"kind": "tutorial.output_only"}', {}),
            ("/streams", b"kind=tutorial.output_only", FORM),
            ("/chat", b'{"message": "hi"}', {"content-type": "text/plain;charset=UTF-8"}),
            ("/api/chat", b'{"id": "c"}', {"content-type": "multipart/form-data; boundary=x"}),
            ("/streams/{settled}/cancel", b"{}", {"content-type": "text/plain"}),
        ]
    ],
    *[
        (method, path, {"json": body, "headers": {"Host": host}}, 403, "host_not_allowed")
        for method, path, body, host in [
            ("GET", "/ledger/streams", None, "evil.example"),
            ("GET", "/ledger/streams", None, "evil.example:3000"),
            ("POST", "/streams", {"kind": "tutorial.output_only"}, "127.0.0.1.evil.example"),
            ("GET", "/", None, "attacker.localhost.example"),
        ]
    ],
    *[
        (
            "POST",
            path,
            {"json": body, "headers": {"Origin": origin}},
            403,
            "origin_not_allowed",
        )
        for path, body, origin in [
            ("/streams", {"kind": "tutorial.output_only"}, "http://evil.example"),
            ("/streams", {"kind": "tutorial.output_only"}, "http://127.0.0.1:1"),
            ("/streams", {"kind": "tutorial.output_only"}, "null"),
            ("/chat", {"message": "hi"}, "http://localhost:8888"),
            ("/streams/{settled}/cancel", {}, "https://evil.example"),
        ]
    ],
]


@pytest.fixture
async def small_server(start_server) -> ServerHandle:
    handle: ServerHandle = await start_server(max_body_bytes=2000)
    return handle


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "error_type"), CASES)
async def test_bad_input_is_a_4xx_json_error_and_changes_nothing(
    small_server: ServerHandle,
    server_runtime: sn.StreamRuntime,
    method: str,
    path: str,
    kwargs: dict[str, Any],
    status: int,
    error_type: str,
) -> None:
    async with httpx.AsyncClient(base_url=small_server.url, timeout=10) as client:
        settled = await open_stream(client, "tutorial.output_only")
        await server_runtime.wait(settled, timeout_s=10)
        ledger = server_runtime.ledger
        before = (len(ledger.streams()), len(ledger.events()), server_runtime.active_refs())
        response = await client.request(method, path.format(settled=settled), **kwargs)
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == "application/json"
        error = response.json()["error"]
        assert error["type"] == error_type
        assert isinstance(error["message"], str)
        assert error["message"]
        if error_type == "start_rejected":
            assert error["issues"] == ["'n' must be an integer"]
        after = (len(ledger.streams()), len(ledger.events()), server_runtime.active_refs())
        assert after == before


def test_every_streamnb_error_has_a_4xx_or_5xx_status() -> None:
    errors = [
        sn.UnknownKindError("k", []),
        sn.UnknownStreamError("r"),
        sn.StartRejectedError("k", ["bad"]),
        sn.StreamSettledError("r", "completed"),
        sn.InputNotAcceptedError("r", "no"),
        sn.InvalidFrameError("bad"),
        sn.StreamTimeoutError(1.0, 0),
        sn.RuntimeClosedError("closed"),
        sn.LedgerQueryError("SELECT", "bad"),
        sn.LedgerTimeoutError(10.0, "out of time"),
        sn.LedgerError("disk"),
        sn.HandlerDefinitionError("k", "bad"),
    ]
    statuses = [status_for(e) for e in errors]
    assert statuses == [
        (404, "unknown_kind"),
        (404, "unknown_stream"),
        (422, "start_rejected"),
        (409, "stream_settled"),
        (409, "input_not_accepted"),
        (422, "invalid_frame"),
        (504, "timeout"),
        (503, "runtime_closed"),
        (400, "ledger_query"),
        (504, "ledger_timeout"),
        (503, "ledger_error"),
        (400, "streamnb_error"),
    ]
