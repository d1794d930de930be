"""ChatRoomsWidget without a browser: per-view requests, live room list, deltas, errors."""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import streamnb as sn
from streamnb.rooms import ChatRooms, room_reply_handler
from streamnb.testing import FakeTokenSource, lorem_tokens, recorded_messages
from streamnb.widget import ChatRoomsWidget

STATIC = Path(sn.__file__).parent / "static"
WAIT_S = 10.0


class RoomView:
    """What one view of rooms.js does with the kernel's custom messages, in Python."""

    def __init__(self, widget: ChatRoomsWidget, view: str) -> None:
        self.widget = widget
        self.view = view
        self.selected: str | None = None
        self.messages: list[dict[str, Any]] = []
        self.reply: dict[str, Any] | None = None
        self.errors: list[str] = []

    def request(self, type: str, **fields: Any) -> None:
        content = {"type": type, "view": self.view, "room_id": self.selected, **fields}
        self.widget._handle_custom_msg(content, [])

    def select(self, room_id: str) -> None:
        self.selected, self.messages, self.reply = room_id, [], None
        self.request("open")

    def receive(self, msg: dict[str, Any]) -> None:
        if msg.get("view") not in (None, self.view):
            return
        if msg["type"] == "created":
            self.select(msg["room_id"])
        elif msg["type"] == "error":
            self.errors.append(msg["message"])
        elif msg.get("room_id") != self.selected:
            return
        elif msg["type"] == "messages":
            self.messages = msg["messages"]
            snap = msg["reply"]
            if snap is None:
                self.reply = None
            elif not (
                self.reply
                and self.reply["id"] == snap["message_id"]
                and self.reply["last"] >= snap["upto_seq"]
            ):
                self.reply = {
                    "id": snap["message_id"],
                    "last": snap["upto_seq"],
                    "text": snap["text"],
                }
        elif msg["type"] == "delta":
            streaming = any(
                m["id"] == msg["message_id"] and m["status"] == "streaming" for m in self.messages
            )
            if not streaming:
                return
            assert self.reply is not None and self.reply["id"] == msg["message_id"]
            if msg["to_seq"] <= self.reply["last"]:
                return
            assert msg["from_seq"] == self.reply["last"] + 1, "gap between deltas"
            self.reply["last"] = msg["to_seq"]
            self.reply["text"] += msg["text"]

    def shown(self) -> list[tuple[str, str, str]]:
        """(role, text, status) per transcript item, as the view would render it."""
        out = []
        for m in self.messages:
            text = m["content"]
            if m["status"] == "streaming" and self.reply and self.reply["id"] == m["id"]:
                text = self.reply["text"]
            out.append((m["role"], text, m["status"]))
        return out


class Page:
    """Views of one widget, each fed every message the widget sends."""

    def __init__(self, widget: ChatRoomsWidget, sent: list[dict[str, Any]]) -> None:
        self.widget = widget
        self.sent = sent
        self.views: list[RoomView] = []
        self._fed = 0

    def view(self, name: str) -> RoomView:
        v = RoomView(self.widget, name)
        self.views.append(v)
        return v

    def pump(self) -> None:
        while self._fed < len(self.sent):
            msg = self.sent[self._fed]
            self._fed += 1
            for v in self.views:
                v.receive(msg)

    async def settle(self, timeout_s: float = WAIT_S) -> None:
        await self.widget.wait(timeout_s)
        await asyncio.sleep(0.05)  # let the last flush go out
        self.pump()


@pytest.fixture
async def rooms() -> AsyncIterator[ChatRooms]:
    source = FakeTokenSource(lorem_tokens(60), rate_tokens_per_s=300)
    runtime = sn.StreamRuntime(cancel_grace_s=0.2, force_wait_s=0.2)
    registry = ChatRooms(runtime=runtime, handler_factory=lambda k: room_reply_handler(k, source))
    try:
        yield registry
    finally:
        await registry.aclose()
        await runtime.aclose()
        runtime.ledger.close()


class Changes:
    """An event set whenever the widget sends a message or its room list changes."""

    def __init__(self, widget: ChatRoomsWidget) -> None:
        self.event = asyncio.Event()
        original = widget.send

        def send(content: Any, buffers: Any = None) -> None:
            original(content, buffers)
            self.event.set()

        widget.send = send  # type: ignore[method-assign]
        widget.observe(lambda _change: self.event.set(), "room_list")

    async def until(self, predicate: Any, timeout_s: float = WAIT_S) -> None:
        async def wait() -> None:
            while not predicate():
                self.event.clear()
                await self.event.wait()

        await asyncio.wait_for(wait(), timeout_s)


async def test_room_list_is_live(rooms: ChatRooms) -> None:
    a = rooms.create_room("Alpha")
    widget = ChatRoomsWidget(rooms)
    assert [r["name"] for r in widget.room_list] == ["Alpha"]
    b = rooms.create_room("Beta")
    assert [r["id"] for r in widget.room_list] == [b, a]
    rooms.rename_room(a, "Alpha 2")
    await rooms.room(a).send("hi")
    first = widget.room_list[0]
    assert (first["name"], first["message_count"], first["busy"]) == ("Alpha 2", 2, True)
    await rooms.room(a).wait(WAIT_S)
    assert widget.room_list[0]["busy"] is False
    await rooms.delete_room(b)
    assert [r["id"] for r in widget.room_list] == [a]
    widget.close()
    rooms.create_room("After close")
    assert len(widget.room_list) == 1  # a closed widget no longer listens


async def test_send_streams_deltas_and_the_view_shows_the_final_text(rooms: ChatRooms) -> None:
    room_id = rooms.create_room("Chat")
    widget = ChatRoomsWidget(rooms)
    with recorded_messages(widget) as sent:
        page = Page(widget, sent)
        view = page.view("v1")
        view.select(room_id)
        page.pump()
        assert view.messages == []
        view.request("send", text="hello")
        await page.settle()
    stored = rooms.room(room_id).messages()
    assert view.shown() == [
        ("user", "hello", "sent"),
        ("assistant", stored["content"][1], "completed"),
    ]
    deltas = [m for m in sent if m["type"] == "delta"]
    assert len(deltas) >= 2
    assert deltas[0]["from_seq"] == 0
    for prev, nxt in itertools.pairwise(deltas):
        assert nxt["from_seq"] == prev["to_seq"] + 1
    assert "".join(d["text"] for d in deltas) == stored["content"][1]
    assert view.errors == []


async def test_two_views_show_different_rooms(rooms: ChatRooms) -> None:
    a, b = rooms.create_room("A"), rooms.create_room("B")
    widget = ChatRoomsWidget(rooms)
    with recorded_messages(widget) as sent:
        page = Page(widget, sent)
        va, vb = page.view("va"), page.view("vb")
        va.select(a)
        vb.select(b)
        va.request("send", text="in A")
        await page.settle()
        vb.request("send", text="in B")
        await page.settle()
    assert va.shown()[0][1] == "in A"
    assert vb.shown()[0][1] == "in B"
    assert va.shown()[1][1].endswith("(turn 1)") and vb.shown()[1][1].endswith("(turn 1)")
    opens = [m for m in sent if m["type"] == "messages" and m["view"] is not None]
    assert {(m["view"], m["room_id"]) for m in opens} == {("va", a), ("vb", b)}


async def test_a_late_view_gets_the_partial_reply_then_deltas(rooms: ChatRooms) -> None:
    room_id = rooms.create_room("Reload")
    widget = ChatRoomsWidget(rooms)
    changes = Changes(widget)
    with recorded_messages(widget) as sent:
        page = Page(widget, sent)
        early = page.view("early")
        early.select(room_id)
        early.request("send", text="x")
        await changes.until(lambda: sum(m["type"] == "delta" for m in sent) >= 3)
        page.pump()
        late = page.view("late")  # a page reload: a new view asks for its room
        late.select(room_id)
        page.pump()
        assert late.reply is not None and late.reply["last"] >= 0 and late.reply["text"]
        await page.settle()
    final = rooms.room(room_id).messages()["content"].tolist()
    assert [t for _, t, _ in late.shown()] == final
    assert [t for _, t, _ in early.shown()] == final


async def test_stop_create_rename_clear_delete_from_a_view(rooms: ChatRooms) -> None:
    widget = ChatRoomsWidget(rooms)
    changes = Changes(widget)
    with recorded_messages(widget) as sent:
        page = Page(widget, sent)
        view = page.view("v")
        view.request("create")
        page.pump()
        assert [r["name"] for r in widget.room_list] == ["Room 1"]
        room_id = widget.room_list[0]["id"]
        assert view.selected == room_id  # the creating view switched to it
        view.request("send", text="long")
        await changes.until(lambda: any(m["type"] == "delta" for m in sent))
        view.request("clear")  # refused while busy
        view.request("send", text="again")  # refused while busy
        view.request("stop")
        await page.settle()
        assert view.shown()[1][2] == "cancelled"
        assert any("busy" in e for e in view.errors)
        view.request("rename", name="Renamed")
        assert widget.room_list[0]["name"] == "Renamed"
        view.request("rename", name="")
        page.pump()
        assert any("empty" in e for e in view.errors)
        view.request("clear")
        page.pump()
        assert view.messages == [] and widget.room_list[0]["message_count"] == 0
        view.request("create", name="Second")
        page.pump()
        view.request("delete")
        await changes.until(lambda: len(widget.room_list) == 1)
        assert [r["name"] for r in widget.room_list] == ["Renamed"]


async def test_bad_requests_answer_the_view_with_an_error(rooms: ChatRooms) -> None:
    widget = ChatRoomsWidget(rooms)
    with recorded_messages(widget) as sent:
        widget._handle_custom_msg({"type": "open", "view": "v", "room_id": "rm_nope"}, [])
        widget._handle_custom_msg({"type": "dance", "view": "v"}, [])
        widget._handle_custom_msg({"type": "send", "view": "v"}, [])
        widget._handle_custom_msg("junk", [])
    errors = [(m["view"], m["message"]) for m in sent if m["type"] == "error"]
    assert errors[0][0] == "v" and "no room with id 'rm_nope'" in errors[0][1]
    assert "unknown rooms widget message type 'dance'" in errors[1][1]
    assert "needs the 'room_id'" in errors[2][1]
    assert errors[3][0] is None and widget.error.startswith("a rooms widget message is a dict")


async def test_widget_created_mid_reply_follows_it(rooms: ChatRooms) -> None:
    room_id = rooms.create_room("Busy")
    await rooms.room(room_id).send("x")
    widget = ChatRoomsWidget(rooms)
    with recorded_messages(widget) as sent:
        page = Page(widget, sent)
        view = page.view("v")
        view.select(room_id)
        await page.settle()
    assert [t for _, t, _ in view.shown()] == rooms.room(room_id).messages()["content"].tolist()
    assert "rooms=1" in repr(widget)


def test_bad_arguments() -> None:
    with pytest.raises(TypeError, match="ChatRooms"):
        ChatRoomsWidget("rooms")  # type: ignore[arg-type]
    rooms = ChatRooms()
    with pytest.raises(ValueError, match="flush_interval_s"):
        ChatRoomsWidget(rooms, flush_interval_s=0)
    rooms.close()


def test_front_end_uses_text_nodes_roles_and_theme_variables() -> None:
    source = str(ChatRoomsWidget._esm)  # common.js + rooms.js: the module the browser loads
    assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write", source)
    assert "export default { initialize, render }" in source
    for needle in (
        'role: "listbox"',
        'role: "option"',
        'role: "log"',
        'role: "status"',
        'role: "alert"',
        '"aria-label": "Message"',
        '"aria-label": "Room name"',
        'button("New room"',
        'button("Rename"',
        'button("Clear"',
        'button("Delete"',
        'button("Stop"',
        'button("Send"',
    ):
        assert needle in source, needle
    css = (STATIC / "rooms.css").read_text()
    assert "--jp-layout-color2" in css and "--jp-ui-font-size0" in css
    assert ".streamnb-rooms-option" in ChatRoomsWidget._css  # both sheets are loaded
    assert ".streamnb-log" in ChatRoomsWidget._css


def test_the_rooms_widget_is_a_loop_widget_of_the_widget_layer() -> None:
    from streamnb.widget._base import STOP_REASON, LoopWidget

    assert sn.ChatRoomsWidget is ChatRoomsWidget
    assert ChatRoomsWidget.__module__ == "streamnb.widget._rooms"
    assert issubclass(ChatRoomsWidget, LoopWidget)  # one loop bridge, one STOP_REASON
    assert STOP_REASON == "user pressed stop"


async def test_a_request_that_cannot_reach_the_loop_says_the_rooms_cannot_be_reached() -> None:
    rooms = ChatRooms()
    widget = ChatRoomsWidget(rooms)
    bridge = widget._bridge
    try:
        widget._bridge = type("ClosedLoop", (), {"call": staticmethod(lambda *_: False)})()
        widget._handle_custom_msg({"type": "open", "view": "v", "room_id": "rm_x"}, [])
        assert widget.error == "the runtime's event loop is closed; the rooms cannot be reached"
    finally:
        widget._bridge = bridge
        widget.close()
        await rooms.aclose()
