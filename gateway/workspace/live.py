"""The agent pages' live socket: GET /agent/ws (WebSocket) relays committed-change notices.

Fed by `gw.bus` (the core and the workspace publish only after COMMIT). The handshake needs the
session cookie, an Origin of this gateway and the session's CSRF token (checklist W1: a page on
another site cannot open it with the agent's cookies). Only notices about incidents the agent
may see (now, or before an escalation moved them) are relayed, and only their tracking number.
The socket lives no longer than its session: it closes on the user's logout or password change
(a bus notice on this instance, and a periodic re-check of the session for the others).
"""

from __future__ import annotations

import asyncio
import contextlib
from functools import partial
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from gateway.core.auth import User, user_by_id
from gateway.core.bus import Notice
from gateway.core.services import Gateway, gw_of
from gateway.store.tx import Tx
from gateway.web.api import current_user
from gateway.workspace.sessions import SESSION_ENDED, check_csrf
from gateway.workspace.web import same_origin

HEARTBEAT = 30.0
MAX_FRAME = 4096  # the client sends nothing but pings


def _relayed(notice: Notice, level: str | None, user: User) -> dict[str, Any] | None:
    """The frame to send for a notice, or None if the agent must not learn of it."""
    if notice.get("type") == "resync":
        return {"type": "resync"}  # changes may have been missed: re-read what is shown
    if notice.get("type") != "incident" or not notice.get("tracking"):
        return None
    if level not in user.levels and notice.get("from_level") not in user.levels:
        return None
    frame = {"type": "incident", "event": notice.get("event"), "tracking": notice["tracking"]}
    if notice.get("action"):
        frame["action"] = notice["action"]
    if notice.get("event") == "escalated":
        # The target team is told in its live queue (the seed's escalation notice).
        frame["level"], frame["team"] = notice.get("level"), notice.get("team")
    return frame


async def agent_socket(request: web.Request) -> web.StreamResponse:
    """GET /agent/ws?csrf=TOKEN: notices of new incidents, messages and changes."""
    user = await current_user(request)
    gw = gw_of(request)
    if request.headers.get("Origin") is None or not same_origin(request, gw.settings.public_url):
        raise web.HTTPForbidden(reason="origin not allowed")
    if not check_csrf(request, request.query.get("csrf")):
        raise web.HTTPForbidden(reason="missing or wrong csrf token")
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT, max_msg_size=MAX_FRAME)
    await ws.prepare(request)
    check_every = gw.settings.agents.session_check.total_seconds()

    async def pump() -> None:
        async with gw.bus.subscribe() as queue:
            await ws.send_json({"type": "hello", "levels": list(user.levels)})
            loop = asyncio.get_running_loop()
            next_check = loop.time() + check_every
            while True:
                notice: Notice | None = None
                with contextlib.suppress(TimeoutError):
                    wait = max(0.0, next_check - loop.time())
                    async with asyncio.timeout(wait):  # not wait_for: see Outbox.run
                        notice = await queue.get()
                mine = notice is not None and notice.get("user_id") == user.id
                ended = mine and notice is not None and notice.get("type") == SESSION_ENDED
                if ended or loop.time() >= next_check:
                    next_check = loop.time() + check_every
                    if not await _still_valid(gw, user):
                        await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"signed out")
                        return
                if notice is None or notice.get("type") == SESSION_ENDED:
                    continue
                tracking = notice.get("tracking")
                level = (
                    await gw.store.read(partial(_level_of, tracking=tracking)) if tracking else None
                )
                frame = _relayed(notice, level, user)
                if frame is not None:
                    await ws.send_json(frame)

    task = asyncio.create_task(pump())
    try:
        async for msg in ws:
            if msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                break
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    return ws


async def _still_valid(gw: Gateway, user: User) -> bool:
    """The session the socket was opened with has not ended (same user, same epoch)."""
    current = await gw.store.read(lambda tx: user_by_id(tx, user.id))
    return current is not None and current.session_epoch == user.session_epoch


def _level_of(tx: Tx, tracking: str) -> str | None:
    row = tx.one("SELECT level FROM incidents WHERE tracking = ?", (tracking,))
    return row["level"] if row else None


def setup(app: web.Application) -> None:
    """Register the socket route."""
    app.router.add_get("/agent/ws", agent_socket)
