"""Bearer-token auth (everything but ``GET /``) and CORS (off unless configured)."""

from __future__ import annotations

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from streamnb.server import ServerHandle

pytest_plugins = ["tests._server"]

pytestmark = pytest.mark.timeout(30)

TOKEN = "s3cret-token"


@pytest.fixture
async def secured(start_server) -> ServerHandle:
    handle: ServerHandle = await start_server(token=TOKEN)
    return handle


async def test_requests_without_the_token_get_401(secured: ServerHandle) -> None:
    async with httpx.AsyncClient(base_url=secured.url) as client:
        for method, path in [
            ("POST", "/streams"),
            ("GET", "/ledger/events"),
            ("POST", "/chat"),
            ("POST", "/api/chat"),
            ("GET", "/streams/st_x/events"),
        ]:
            response = await client.request(method, path, json={"kind": "tutorial.output_only"})
            assert response.status_code == 401, path
            assert response.json()["error"]["type"] == "unauthorized"
            assert response.headers["www-authenticate"].startswith("Bearer")
        wrong = await client.get("/ledger/events", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        basic = await client.get("/ledger/events", headers={"Authorization": f"Basic {TOKEN}"})
        assert basic.status_code == 401


async def test_token_in_header_or_query_is_accepted(secured: ServerHandle) -> None:
    async with httpx.AsyncClient(base_url=secured.url) as client:
        header = await client.get("/ledger/events", headers={"Authorization": f"Bearer {TOKEN}"})
        assert header.status_code == 200
        query = await client.get("/ledger/events", params={"token": TOKEN})
        assert query.status_code == 200
        opened = await client.post(
            "/streams", json={"kind": "tutorial.output_only"}, params={"token": TOKEN}
        )
        assert opened.status_code == 201


async def test_the_page_is_public(secured: ServerHandle) -> None:
    async with httpx.AsyncClient(base_url=secured.url) as client:
        page = await client.get("/", params={"token": TOKEN})
        assert page.status_code == 200
        assert (await client.get("/")).status_code == 200


async def test_websocket_needs_the_token(secured: ServerHandle) -> None:
    async with httpx.AsyncClient(base_url=secured.url) as client:
        opened = await client.post(
            "/streams",
            json={"kind": "tutorial.output_only"},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
    ref = opened.json()["stream_ref"]
    url = f"ws://{secured.host}:{secured.port}/streams/{ref}/ws"
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url):
            pass
    assert refused.value.response.status_code == 403
    async with connect(url, additional_headers={"Authorization": f"Bearer {TOKEN}"}) as ws:
        assert '"kind":"opened"' in await ws.recv()
    async with connect(f"{url}?token={TOKEN}") as ws:
        assert '"kind":"opened"' in await ws.recv()


async def test_cors_is_off_by_default(start_server) -> None:
    handle: ServerHandle = await start_server()
    async with httpx.AsyncClient(base_url=handle.url) as client:
        response = await client.get("/ledger/events", headers={"Origin": "http://evil.test"})
        assert "access-control-allow-origin" not in response.headers
        preflight = await client.options(
            "/streams",
            headers={"Origin": "http://evil.test", "Access-Control-Request-Method": "POST"},
        )
        assert "access-control-allow-origin" not in preflight.headers


async def test_cors_allows_configured_origins(start_server) -> None:
    handle: ServerHandle = await start_server(cors_origins=["http://app.test"], token=TOKEN)
    async with httpx.AsyncClient(base_url=handle.url) as client:
        preflight = await client.options(
            "/chat",
            headers={
                "Origin": "http://app.test",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "http://app.test"
        response = await client.post(
            "/chat",
            json={"message": "hi"},
            headers={"Origin": "http://app.test", "Authorization": f"Bearer {TOKEN}"},
        )
        assert response.headers["access-control-allow-origin"] == "http://app.test"
        assert "x-stream-ref" in response.headers["access-control-expose-headers"].lower()
        other = await client.get(
            "/ledger/events",
            headers={"Origin": "http://evil.test", "Authorization": f"Bearer {TOKEN}"},
        )
        assert "access-control-allow-origin" not in other.headers


@pytest.mark.parametrize("token", ["%E2%82%AC", "%F0%9F%98%80", "%FF%FE", "\u20ac"])
async def test_non_latin1_query_token_is_401_not_500(secured: ServerHandle, token: str) -> None:
    # Regression: a ?token= that decodes to characters outside Latin-1 (any emoji, the
    # euro sign) made the comparison raise UnicodeEncodeError: HTTP 500.
    async with httpx.AsyncClient(base_url=secured.url) as client:
        response = await client.get(f"/ledger/events?token={token}")
        assert response.status_code == 401, response.text
        assert response.json()["error"]["type"] == "unauthorized"


async def test_a_non_ascii_token_works_in_the_query_string(start_server) -> None:
    handle: ServerHandle = await start_server(token="s\u00e9same-\u20ac")
    async with httpx.AsyncClient(base_url=handle.url) as client:
        ok = await client.get("/ledger/events", params={"token": "s\u00e9same-\u20ac"})
        assert ok.status_code == 200
        assert (await client.get("/ledger/events", params={"token": "sesame"})).status_code == 401
