"""``streamnb serve``: argument parsing, ``--handlers`` loading, and a real process."""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from streamnb.cli import build_parser, load_handlers, main

pytestmark = pytest.mark.timeout(60)

USER_MODULE = textwrap.dedent(
    """
    import streamnb as sn

    async def run(start, input, ctx):
        yield sn.output("from user handler", "stdout")
        yield sn.completed()

    one = sn.AttachedStreamHandler(kind="user.one", run=run, on_detach="continue")
    two = sn.AttachedStreamHandler(kind="user.two", run=run, on_detach="continue")
    both = [one, two]

    def factory():
        return [sn.AttachedStreamHandler(kind="user.made", run=run, on_detach="continue")]

    class Holder:
        handler = one

    not_a_handler = 42
    """
)


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "streamnb_user_handlers.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_load_handlers_accepts_a_handler_a_list_or_a_factory(user_module: Path) -> None:
    mod = "streamnb_user_handlers"
    assert [h.kind for h in load_handlers(f"{mod}:one")] == ["user.one"]
    assert [h.kind for h in load_handlers(f"{mod}:both")] == ["user.one", "user.two"]
    assert [h.kind for h in load_handlers(f"{mod}:factory")] == ["user.made"]
    assert [h.kind for h in load_handlers(f"{mod}:Holder.handler")] == ["user.one"]


def test_load_handlers_errors(user_module: Path) -> None:
    with pytest.raises(ValueError, match="module:attr"):
        load_handlers("streamnb_user_handlers")
    with pytest.raises(ValueError, match="AttachedStreamHandler"):
        load_handlers("streamnb_user_handlers:not_a_handler")
    with pytest.raises(AttributeError):
        load_handlers("streamnb_user_handlers:missing")
    with pytest.raises(ImportError):
        load_handlers("no_such_module_anywhere:x")


def test_parser_defaults_and_bad_handlers_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(["serve"])
    assert (args.host, args.port, args.ledger, args.token, args.rate) == (
        "127.0.0.1", 3000, None, None, 20.0
    )  # fmt: skip
    assert args.cors_origin == []
    assert build_parser().parse_args(["serve", "--rate", "0"]).rate is None
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--handlers", "no_such_module_anywhere:x"])
    assert exited.value.code == 2
    assert "--handlers no_such_module_anywhere:x" in capsys.readouterr().err
    assert main([]) == 2


def read_line(proc: subprocess.Popen[str], pattern: str, timeout_s: float = 30) -> re.Match[str]:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    seen = []
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            if m := re.search(pattern, line):
                return m
    raise AssertionError(f"no line matching {pattern!r} in {seen!r}")


@contextlib.contextmanager
def served(*args: str, env: dict[str, str] | None = None) -> Iterator[tuple[re.Match[str], str]]:
    """Run ``streamnb serve --port 0 ARGS`` in a subprocess until the block ends.

    Yields the match of its "serving KINDS on URL" line and the URL. On a clean
    exit of the block the server is stopped with SIGINT and must exit 0; the
    process is always ended and its pipes closed.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamnb.cli", "serve", "--port", "0", *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        match = read_line(proc, r"serving (.*) on (http://127\.0\.0\.1:\d+/)")
        yield match, match.group(2)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def test_serve_runs_uvicorn_with_demo_and_user_handlers(user_module: Path, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(user_module), os.environ.get("PYTHONPATH", "")]),
        "STREAMNB_TOKEN": "env-token",
    }
    ledger = tmp_path / "served.db"
    with served(
        "--rate", "0", "--ledger", str(ledger), "--handlers", "streamnb_user_handlers:factory",
        "--log-level", "warning", env=env,
    ) as (match, url):  # fmt: skip
        assert match.group(1) == "tutorial.output_only, tutorial.streaming_chatbot, user.made"
        auth = {"Authorization": "Bearer env-token"}
        with httpx.Client(base_url=url, timeout=10) as client:
            assert client.get("/").status_code == 200
            assert client.post("/chat", json={"message": "hi"}).status_code == 401
            chat = client.post("/chat", json={"message": "hi"}, headers=auth)
            assert re.search(
                r'id: (\d+)\ndata: \{"content":"hi"\}\n\nid: (\d+)\ndata: \[DONE\]\n\n$', chat.text
            )
            opened = client.post("/streams", json={"kind": "user.made"}, headers=auth)
            ref = opened.json()["stream_ref"]
            events = client.get(f"/streams/{ref}/events", headers=auth).text
            assert "from user handler" in events
    assert ledger.exists()


def test_serve_with_shipped_cassette_replays_it_on_chat() -> None:
    import json

    from streamnb.providers import Cassette, shipped_cassette

    expected = Cassette.load(shipped_cassette()).text()
    with served("--cassette", "shipped", "--log-level", "warning") as (_, url):
        with httpx.Client(base_url=url, timeout=30) as client:
            body = client.post("/chat", json={"message": "anything"}).text
        tokens = [
            json.loads(line[6:])["content"]
            for line in body.splitlines()
            if line.startswith("data: {")
        ]
        assert "".join(tokens) == expected


def test_serve_with_a_missing_cassette_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--cassette", "/nonexistent/cassette.json"])
    assert exited.value.code == 2
    assert "cassette.json" in capsys.readouterr().err


def test_serve_with_rooms_keeps_them_in_the_directory(tmp_path: Path) -> None:
    rooms_dir = tmp_path / "rooms"
    # paced (40 tokens at 20/s): the reply is still streaming when the test reads it
    with served("--rate", "20", "--rooms", str(rooms_dir), "--log-level", "warning") as (_, url):
        with httpx.Client(base_url=url, timeout=30) as client:
            created = client.post("/rooms", json={"name": "served"})
            assert created.status_code == 201, created.text
            room_id = created.json()["id"]
            started = client.post(f"/rooms/{room_id}/messages", json={"text": "hello"})
            assert started.status_code == 202
            stream = client.get(f"/rooms/{room_id}/stream").text
            assert "event: completed" in stream
            messages = client.get(f"/rooms/{room_id}/messages").json()["messages"]
        assert [m["role"] for m in messages] == ["user", "assistant"]
        assert messages[1]["content"].endswith("reply to hello")
    assert (rooms_dir / "registry.db").exists()
    assert len(list((rooms_dir / "rooms").glob("*.db"))) == 1
